import { ConfigError } from './errors.js';
import { checkHeaders } from './names.js';

/** What a publish needs to write a CloudEvent in binary mode (the topic may give `type` and `source`). */
export interface CloudEventOptions {
  /** The event type, e.g. `com.example.order.created`. */
  type?: string;
  /** The context that produced it, a URI-reference, e.g. `/orders` or `urn:service:orders`. */
  source?: string;
  subject?: string;
  dataschema?: string;
  /** Extension attributes: names of 1-20 lower-case letters and digits, string values. */
  extensions?: Record<string, string>;
}

const EXTENSION = /^[a-z0-9]{1,20}$/;
const RESERVED = new Set([
  'specversion',
  'id',
  'source',
  'type',
  'subject',
  'time',
  'datacontenttype',
  'dataschema',
  'data',
  'data_base64',
]);

function text(value: unknown, what: string): string | undefined {
  if (value === undefined) return undefined;
  if (typeof value !== 'string' || value.length === 0)
    throw new ConfigError(`Invalid cloudEvent: ${what} must be a non-empty string`);
  return value;
}

/**
 * The binary-mode attribute headers of a CloudEvent (spec 1.0) under the broker binding's `prefix`. The
 * message id is the event id and the content type travels in the broker's own field, as the bindings say.
 */
export function cloudEventHeaders(
  topicDefaults: CloudEventOptions | undefined,
  options: CloudEventOptions | undefined,
  id: string,
  timestamp: number,
  prefix: string,
): Record<string, string> {
  if (options !== undefined && (typeof options !== 'object' || options === null)) {
    throw new ConfigError('Invalid publish options: cloudEvent must be an object');
  }
  const merged = { ...topicDefaults, ...options };
  const type = text(merged.type, 'type');
  const source = text(merged.source, 'source');
  if (type === undefined || source === undefined) {
    throw new ConfigError('Invalid cloudEvent: type and source are required (on the topic or the publish)');
  }
  const attributes: Record<string, string> = {
    specversion: '1.0',
    id,
    source,
    type,
    time: new Date(timestamp).toISOString(),
  };
  const subject = text(merged.subject, 'subject');
  if (subject !== undefined) attributes.subject = subject;
  const dataschema = text(merged.dataschema, 'dataschema');
  if (dataschema !== undefined) attributes.dataschema = dataschema;
  for (const [name, value] of Object.entries(merged.extensions ?? {})) {
    if (!EXTENSION.test(name) || RESERVED.has(name)) {
      throw new ConfigError(
        `Invalid cloudEvent: extension '${name}' must be 1-20 lower-case letters or digits, not a context attribute`,
      );
    }
    attributes[name] = text(value, `extension '${name}'`) as string;
  }
  // Values obey the same portable header rules as user headers (no control characters, bounded size).
  checkHeaders(attributes);
  const headers: Record<string, string> = {};
  for (const name in attributes) headers[`${prefix}${name}`] = attributes[name] as string;
  return headers;
}
