import { type Codec, jsonCodec } from './codec.js';
import { DecodeError } from './errors.js';

/**
 * How a received body becomes a payload when the topic uses the default JSON codec: by the content type the
 * message carries, so a foreign producer's text, bytes or CloudEvent reach the handler as what they are
 * instead of a DecodeError dead letter. A topic with an explicit codec (`codecs.string`, `codecs.bytes`, your
 * own) always decodes with it: the user said what the bytes are.
 *
 * - `application/json`, `*+json`: JSON (a body that is not JSON is a DecodeError: it said it was);
 * - `text/*`: a string (in its `charset` when Node knows it, else UTF-8);
 * - `application/cloudevents+json`: a structured CloudEvent, see {@link CloudEvent};
 * - no content type: `null` for an empty body (a tombstone), JSON when the body parses, else the bytes;
 * - anything else: the bytes (`Uint8Array`, a Buffer on most drivers).
 */

/** CloudEvents context attributes of a received event (binary or structured mode). */
export interface CloudEvent {
  readonly specversion: string;
  readonly id: string;
  readonly source: string;
  readonly type: string;
  readonly subject?: string;
  readonly time?: string;
  readonly datacontenttype?: string;
  readonly dataschema?: string;
  /** Extension attributes, by name (lower case). */
  readonly extensions: Readonly<Record<string, string>>;
}

export interface Decoded {
  readonly payload: unknown;
  readonly cloudEvent: CloudEvent | undefined;
}

const utf8 = new TextDecoder('utf-8', { fatal: true });
const STRUCTURED = 'application/cloudevents+json';
/** The header prefixes of the CloudEvents protocol bindings: HTTP/NATS, Kafka, AMQP (1.0 and 1.0.2+). */
const PREFIXES = ['ce-', 'ce_', 'cloudevents:', 'cloudevents_'];
const REQUIRED = ['id', 'source', 'type'] as const;
const KNOWN = new Set(['specversion', 'id', 'source', 'type', 'subject', 'time', 'datacontenttype', 'dataschema']);

/** The media type without parameters, lower case: `Application/JSON; charset=utf-8` -> `application/json`. */
export function mediaType(contentType: string | undefined): string | undefined {
  if (contentType === undefined || contentType === 'application/json') return contentType;
  const semi = contentType.indexOf(';');
  const type = (semi < 0 ? contentType : contentType.slice(0, semi)).trim().toLowerCase();
  return type === '' ? undefined : type;
}

function charsetOf(contentType: string): string | undefined {
  const match = /;\s*charset="?([^";\s]+)"?/i.exec(contentType);
  return match?.[1]?.toLowerCase();
}

function parseJson(body: Uint8Array): unknown {
  try {
    return JSON.parse(utf8.decode(body));
  } catch (error) {
    throw new DecodeError(`Body is not valid JSON: ${(error as Error).message}`, { cause: error });
  }
}

function text(body: Uint8Array, contentType: string): string | Uint8Array {
  const charset = charsetOf(contentType);
  try {
    if (charset === undefined || charset === 'utf-8' || charset === 'utf8') return utf8.decode(body);
    return new TextDecoder(charset, { fatal: true }).decode(body);
  } catch {
    // Not text in the charset it claims (or a charset Node does not know): hand over the bytes as they are.
    return body;
  }
}

/** The payload of a body by the rules above (only for topics on the default JSON codec). */
export function decodeByContentType(body: Uint8Array, contentType: string | undefined): unknown {
  const type = mediaType(contentType);
  if (type === 'application/json') return parseJson(body);
  if (type === undefined) {
    // An empty body that claims nothing is "no value" (a Kafka tombstone, an MQTT retained-message clear).
    if (body.byteLength === 0) return null;
    // The common case is busbar's own JSON from a broker with no content-type field: one parse, no fallback cost.
    try {
      return JSON.parse(utf8.decode(body));
    } catch {
      return body;
    }
  }
  if (type.endsWith('+json')) return parseJson(body);
  if (type.startsWith('text/')) return text(body, contentType as string);
  return body;
}

function ownString(record: Readonly<Record<string, unknown>>, name: string): string | undefined {
  const value = Object.hasOwn(record, name) ? record[name] : undefined;
  return typeof value === 'string' && value.length > 0 ? value : undefined;
}

/** A binary-mode CloudEvent from its headers (any binding's prefix, any case), or undefined. */
export function binaryCloudEvent(
  headers: Readonly<Record<string, string>>,
  contentType: string | undefined,
): CloudEvent | undefined {
  let prefix: string | undefined;
  // Allocated only when a message has CloudEvent headers; Object.create(null), since names come from the wire.
  let lower: Record<string, string> | undefined;
  for (const name in headers) {
    // Every binding prefix starts with 'c' (ce-, ce_, cloudEvents:): the usual message pays one comparison.
    const first = name.charCodeAt(0);
    if (first !== 99 && first !== 67) continue;
    const key = name.toLowerCase();
    for (const p of PREFIXES) {
      if (key.startsWith(p)) {
        lower ??= Object.create(null) as Record<string, string>;
        lower[key.slice(p.length)] = headers[name] as string;
        if (key === `${p}specversion`) prefix = p;
      }
    }
  }
  // MQTT 5's binding puts the attributes in user properties under their own names.
  if (prefix === undefined && Object.hasOwn(headers, 'specversion')) {
    lower ??= Object.create(null) as Record<string, string>;
    for (const name of KNOWN) {
      const value = ownString(headers, name);
      if (value !== undefined) lower[name] = value;
    }
    prefix = '';
  }
  if (prefix === undefined || lower === undefined) return undefined;
  return cloudEventFrom(lower, contentType, prefix === '');
}

function cloudEventFrom(
  attributes: Readonly<Record<string, unknown>>,
  contentType: string | undefined,
  bareNames: boolean,
): CloudEvent | undefined {
  const specversion = ownString(attributes, 'specversion');
  if (specversion === undefined) return undefined;
  for (const name of REQUIRED) if (ownString(attributes, name) === undefined) return undefined;
  const extensions: Record<string, string> = {};
  if (!bareNames) {
    for (const name in attributes) {
      const value = attributes[name];
      if (!KNOWN.has(name) && name !== 'data' && name !== 'data_base64' && /^[a-z0-9]{1,20}$/.test(name)) {
        if (value !== undefined && value !== null)
          extensions[name] = typeof value === 'string' ? value : JSON.stringify(value);
      }
    }
  }
  const optional = (name: string) => ownString(attributes, name);
  const datacontenttype = optional('datacontenttype') ?? contentType;
  return {
    specversion,
    id: attributes.id as string,
    source: attributes.source as string,
    type: attributes.type as string,
    ...(optional('subject') === undefined ? {} : { subject: optional('subject') }),
    ...(optional('time') === undefined ? {} : { time: optional('time') }),
    ...(datacontenttype === undefined ? {} : { datacontenttype }),
    ...(optional('dataschema') === undefined ? {} : { dataschema: optional('dataschema') }),
    extensions,
  };
}

/**
 * Decodes a received body: CloudEvents (binary or structured) first, then the topic's codec, or the content
 * type rules when the codec is the default JSON one.
 */
export function decodeInbound(
  codec: Codec<unknown>,
  body: Uint8Array,
  contentType: string | undefined,
  headers: Readonly<Record<string, string>>,
): Decoded {
  if (mediaType(contentType) === STRUCTURED) {
    const envelope = parseJson(body);
    if (typeof envelope === 'object' && envelope !== null && !Array.isArray(envelope)) {
      const attributes = envelope as Record<string, unknown>;
      const cloudEvent = cloudEventFrom(attributes, undefined, false);
      if (cloudEvent) return { payload: structuredData(attributes), cloudEvent };
    }
    throw new DecodeError('Body is application/cloudevents+json but not a CloudEvent (specversion, id, source, type)');
  }
  const cloudEvent = binaryCloudEvent(headers, contentType);
  if (codec !== jsonCodec) return { payload: codec.decode(body), cloudEvent };
  return { payload: decodeByContentType(body, cloudEvent?.datacontenttype ?? contentType), cloudEvent };
}

function structuredData(attributes: Readonly<Record<string, unknown>>): unknown {
  if (typeof attributes.data_base64 === 'string') return Buffer.from(attributes.data_base64, 'base64');
  // JSON data sits in the envelope as JSON, other text as a string (JSON format, 3.1): either way, as is.
  return attributes.data;
}
