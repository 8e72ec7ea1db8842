import { type Codec, jsonCodec } from './codec.js';
import { DecodeError } from './errors.js';
import { usableId } from './transport/headers.js';

/**
 * How a received body becomes a payload when the topic uses the default JSON codec: by the content type the
 * message carries, so a foreign producer's text, bytes or CloudEvent reach the handler as what they are
 * instead of a DecodeError dead letter. A topic with an explicit codec (`codecs.string`, `codecs.bytes`, your
 * own) always decodes with it: the user said what the bytes are.
 *
 * - `application/json`, `*+json`: JSON, in its `charset` if it names one (a body that is not JSON is a
 *   DecodeError: it said it was);
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

function charsetOf(contentType: string | undefined): string | undefined {
  // Most content types carry no parameters: no regex for them.
  if (contentType === undefined || !contentType.includes(';')) return undefined;
  const match = /;\s*charset="?([^";\s]+)"?/i.exec(contentType);
  return match?.[1]?.toLowerCase();
}

/**
 * The body as text in `charset` (UTF-8 when none), or a throw when it is not. Node's `utf-16` is little-endian
 * (the WHATWG label), but Java's `UTF-16` writes big-endian behind a byte order mark: the mark decides.
 */
function decodeText(body: Uint8Array, charset: string | undefined): string {
  if (charset === undefined || charset === 'utf-8' || charset === 'utf8') return utf8.decode(body);
  const label = charset === 'utf-16' && body[0] === 0xfe && body[1] === 0xff ? 'utf-16be' : charset;
  return new TextDecoder(label, { fatal: true }).decode(body);
}

/**
 * JSON is UTF-8 (RFC 8259, which gives application/json no charset), so that is tried first. A producer that
 * names another charset (UTF-16, ISO-8859-1: older Java and .NET stacks) wrote its text in it, though: only
 * when the body is not UTF-8 JSON is it read in that charset. It was a DecodeError dead letter.
 */
function parseJson(body: Uint8Array, contentType: string | undefined): unknown {
  try {
    return JSON.parse(utf8.decode(body));
  } catch (error) {
    const charset = charsetOf(contentType);
    if (charset !== undefined && charset !== 'utf-8' && charset !== 'utf8') {
      try {
        return JSON.parse(decodeText(body, charset));
      } catch {
        // Not JSON in that charset either: the UTF-8 error says what is wrong with it.
      }
    }
    throw new DecodeError(`Body is not valid JSON: ${(error as Error).message}`, { cause: error });
  }
}

function text(body: Uint8Array, contentType: string): string | Uint8Array {
  try {
    return decodeText(body, charsetOf(contentType));
  } catch {
    // Not text in the charset it claims (or a charset Node does not know): hand over the bytes as they are.
    return body;
  }
}

/** The payload of a body by the rules above (only for topics on the default JSON codec). */
export function decodeByContentType(body: Uint8Array, contentType: string | undefined): unknown {
  const type = mediaType(contentType);
  if (type === 'application/json') return parseJson(body, contentType);
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
  if (type.endsWith('+json')) return parseJson(body, contentType);
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
  // The event id becomes the message id (idempotency keys, dead letters, logs): it obeys the rule for ids
  // from the wire, or the message is not read as a CloudEvent (a 300 KB id full of line feeds was taken).
  if (!usableId(attributes.id)) return undefined;
  const extensions: Record<string, string> = {};
  if (!bareNames) {
    for (const name in attributes) {
      const value = attributes[name];
      if (!KNOWN.has(name) && name !== 'data' && name !== 'data_base64' && /^[a-z0-9]{1,20}$/.test(name)) {
        // Attribute values are strings, numbers or booleans in the JSON format; an object or array is no
        // attribute. JSON.stringify of one 100,000 arrays deep threw a RangeError that no dead-letter reader
        // got past: the message came back to them for good.
        if (typeof value === 'string') extensions[name] = value;
        else if (typeof value === 'number' || typeof value === 'boolean') extensions[name] = String(value);
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
 * Decodes a received body: the topic's codec when it has an explicit one (a structured CloudEvent's attributes
 * read beside it), else CloudEvents (binary or structured) first, then the content type rules.
 */
export function decodeInbound(
  codec: Codec<unknown>,
  body: Uint8Array,
  contentType: string | undefined,
  headers: Readonly<Record<string, string>>,
): Decoded {
  if (codec !== jsonCodec && mediaType(contentType) === STRUCTURED) {
    // The topic's codec decodes the whole body, envelope and all: a `codecs.bytes` handler typed for a
    // Uint8Array was handed the event's `data` object. The attributes still come along when the envelope is one.
    return { payload: codec.decode(body), cloudEvent: structuredAttributes(body, contentType) };
  }
  if (mediaType(contentType) === STRUCTURED) {
    const envelope = parseJson(body, contentType);
    if (typeof envelope === 'object' && envelope !== null && !Array.isArray(envelope)) {
      const attributes = envelope as Record<string, unknown>;
      const cloudEvent = cloudEventFrom(attributes, undefined, false);
      if (cloudEvent) return { payload: structuredData(attributes), cloudEvent };
    }
    throw new DecodeError(
      'Body is application/cloudevents+json but not a CloudEvent (specversion, id, source and type strings; an id of at most 1 KB without control characters)',
    );
  }
  const cloudEvent = binaryCloudEvent(headers, contentType);
  if (codec !== jsonCodec) return { payload: codec.decode(body), cloudEvent };
  return { payload: decodeByContentType(body, cloudEvent?.datacontenttype ?? contentType), cloudEvent };
}

/** A structured envelope's attributes, or undefined when the body is no CloudEvent (never a throw). */
function structuredAttributes(body: Uint8Array, contentType: string | undefined): CloudEvent | undefined {
  try {
    const envelope = parseJson(body, contentType);
    if (typeof envelope !== 'object' || envelope === null || Array.isArray(envelope)) return undefined;
    return cloudEventFrom(envelope as Record<string, unknown>, undefined, false);
  } catch {
    return undefined;
  }
}

/** Base64 (RFC 4648, either alphabet), padded or not; line breaks as MIME encoders (Java's) write them. */
const BASE64 = /^[A-Za-z0-9+/_-]*={0,2}$/;

function structuredData(attributes: Readonly<Record<string, unknown>>): unknown {
  const encoded = Object.hasOwn(attributes, 'data_base64') ? attributes.data_base64 : undefined;
  // null: a serializer that writes every field of its class (Jackson's default) with no binary data.
  if (encoded !== undefined && encoded !== null) {
    // Buffer.from skips characters that are not base64 and stops at a misplaced '=': '!!!' or a number was
    // handed over as other bytes than were sent.
    const compact = typeof encoded === 'string' ? encoded.replace(/\r?\n/g, '') : undefined;
    if (compact === undefined || !BASE64.test(compact) || compact.replace(/=+$/, '').length % 4 === 1) {
      throw new DecodeError('CloudEvent data_base64 is not base64');
    }
    return Buffer.from(compact, 'base64');
  }
  // JSON data sits in the envelope as JSON, other text as a string (JSON format, 3.1): either way, as is.
  return attributes.data;
}
