import { BusbarError, ConfigError } from './errors.js';
import { checkHeaders, checkHeadersSize, isIterable } from './names.js';
import { toFailure } from './thrown.js';

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

/** What a `cloudEvent` option may hold: anything else (`id`, `time`) would be dropped without a word. */
const OPTION_KEYS = new Set(['type', 'source', 'subject', 'dataschema', 'extensions']);

function text(value: unknown, what: string): string | undefined {
  if (value === undefined) return undefined;
  if (typeof value !== 'string' || value.length === 0)
    throw new ConfigError(`Invalid cloudEvent: ${what} must be a non-empty string`);
  return value;
}

function checkOptions(options: unknown, where: string): void {
  if (options === undefined) return;
  if (typeof options !== 'object' || options === null || Array.isArray(options)) {
    throw new ConfigError(`Invalid ${where}: cloudEvent must be an object`);
  }
  for (const name of Object.keys(options)) {
    if (!OPTION_KEYS.has(name)) {
      const hint = name === 'id' ? " (the event id is the message id: the publish option 'id')" : '';
      throw new ConfigError(`Invalid ${where}: unknown cloudEvent option '${name.slice(0, 60)}'${hint}`);
    }
  }
  const extensions = (options as CloudEventOptions).extensions;
  // A string or an array spread into attributes named '0', '1', ... (`ce-0: a`), a Map into none at all.
  if (extensions !== undefined && (typeof extensions !== 'object' || extensions === null || isIterable(extensions))) {
    throw new ConfigError(`Invalid ${where}: cloudEvent extensions must be an object of strings`);
  }
}

/**
 * The user's `headers` (checked) plus the binary-mode attribute headers of a CloudEvent (spec 1.0) under the
 * broker binding's `prefix`. The message id is the event id and the content type travels in the broker's own
 * field, as the bindings say.
 */
export function cloudEventHeaders(
  headers: Readonly<Record<string, string>>,
  topicDefaults: CloudEventOptions | undefined,
  options: CloudEventOptions | undefined,
  id: string,
  timestamp: number,
  prefix: string,
): Record<string, string> {
  let attributes: Record<string, string>;
  try {
    attributes = attributesOf(topicDefaults, options, id, timestamp);
  } catch (error) {
    if (BusbarError.is(error)) throw error;
    // A getter or Proxy trap in the options that throws: a typed error like any other bad option.
    throw new ConfigError(`Invalid cloudEvent: it could not be read: ${toFailure(error).message.slice(0, 200)}`);
  }
  const out: Record<string, string> = { ...headers };
  for (const name in attributes) out[`${prefix}${name}`] = attributes[name] as string;
  // The attributes are headers on the wire: with the user's, they stay within the portable limit (40 KB of
  // each passed apart, and NATS refuses a header block over 64 KiB).
  checkHeadersSize(out);
  return out;
}

function attributesOf(
  topicDefaults: CloudEventOptions | undefined,
  options: CloudEventOptions | undefined,
  id: string,
  timestamp: number,
): Record<string, string> {
  checkOptions(options, 'publish options');
  checkOptions(topicDefaults, "topic's options");
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
        `Invalid cloudEvent: extension '${name.slice(0, 60)}' must be 1-20 lower-case letters or digits, not a context attribute`,
      );
    }
    attributes[name] = text(value, `extension '${name}'`) as string;
  }
  // Values obey the same portable header rules as user headers (no control characters, bounded size).
  checkHeaders(attributes);
  return attributes;
}
