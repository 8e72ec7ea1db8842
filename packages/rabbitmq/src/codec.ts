import { randomUUID } from 'node:crypto';
import { brotliDecompressSync, gunzipSync, inflateSync } from 'node:zlib';
import { InvalidHeaderError } from '@busbar/core';
import {
  addWireHeader,
  HEADER,
  numericHeader,
  type OutgoingRecord,
  usableId,
  wireHeaderValue,
} from '@busbar/core/transport';
import type { ConsumeMessage, Options } from 'amqplib';

/** Headers the broker adds (dead-lettering, quorum delivery count): never part of the message, never re-published. */
const BROKER_HEADERS = new Set([
  'x-death',
  'x-delivery-count',
  'x-first-death-exchange',
  'x-first-death-queue',
  'x-first-death-reason',
  'x-last-death-exchange',
  'x-last-death-queue',
  'x-last-death-reason',
]);

export interface PublishSettings {
  readonly mandatory: boolean;
  /** Headers exchange: the topic travels in `HEADER.topic`, which the bindings match. */
  readonly topicHeader: boolean;
  readonly expiration: string | undefined;
  readonly priorityHeader: string | undefined;
}

export function toBuffer(body: Uint8Array): Buffer {
  return Buffer.isBuffer(body) ? body : Buffer.from(body.buffer, body.byteOffset, body.byteLength);
}

/**
 * AMQP properties for a record: persistent, id in `messageId`, publish time
 * in `timestamp` (seconds, as AMQP defines it), key in `HEADER.key` only when
 * set. Headers are passed through untouched when nothing is added, to avoid a
 * copy per message.
 */
export function publishOptions(
  record: OutgoingRecord,
  settings: PublishSettings,
  extra?: Record<string, string>,
): Options.Publish {
  let headers: Record<string, string> = record.headers as Record<string, string>;
  const stale = headers[HEADER.topic] !== undefined && !settings.topicHeader && extra === undefined;
  if (record.key !== undefined || settings.topicHeader || extra !== undefined || stale) {
    headers = { ...headers };
    if (stale) delete headers[HEADER.topic];
    if (record.key !== undefined) headers[HEADER.key] = record.key;
    if (settings.topicHeader) headers[HEADER.topic] = record.topic;
    if (extra) Object.assign(headers, extra);
  }
  const options: Options.Publish = {
    deliveryMode: 2,
    mandatory: settings.mandatory,
    messageId: record.id,
    timestamp: Math.floor(record.timestamp / 1000),
  };
  // A message without a content type keeps none (through a retry too): core decodes such a body differently.
  if (record.contentType !== '') options.contentType = record.contentType;
  // An empty table still costs encoding on both ends: leave it out.
  for (const _ in headers) {
    options.headers = headers;
    break;
  }
  if (settings.expiration !== undefined) options.expiration = settings.expiration;
  if (settings.priorityHeader !== undefined) {
    const priority = Number(record.headers[settings.priorityHeader]);
    if (Number.isInteger(priority) && priority >= 0 && priority <= 255) options.priority = priority;
  }
  return options;
}

export interface Incoming {
  readonly id: string;
  readonly topic: string;
  readonly key: string | undefined;
  readonly headers: Record<string, string>;
  readonly timestamp: number;
  readonly attempt: number;
  /** The AMQP `content_type`, undefined when absent or empty; `application/octet-stream` for a body still encoded. */
  readonly contentType: string | undefined;
  /** No usable `message_id`: the id is a random UUID (idempotency cannot deduplicate such messages). */
  readonly idGenerated: boolean;
  /** The body, decompressed when its `content_encoding` is gzip, deflate or br. */
  readonly body: Uint8Array;
}

/** The largest time a JavaScript Date holds (ms); beyond it `new Date()` is Invalid Date. */
const MAX_TIME = 8.64e15;

/**
 * Reads a delivery. Header values of any AMQP type (numbers, booleans, arrays, tables, byte arrays, void,
 * timestamps) become strings by core's one rule for wire headers; the native values stay in `message.raw`.
 * The attempt is the `HEADER.attempt` header (set by a delayed retry) plus the redeliveries the broker
 * counted since: the quorum queue's `x-delivery-count`, or 1 for a classic queue's `redelivered` flag.
 */
export function readMessage(message: ConsumeMessage): Incoming {
  const props = message.properties;
  const raw: Record<string, unknown> | undefined = props.headers;
  const headers: Record<string, string> = {};
  let deliveryCount = 0;
  if (raw) {
    for (const name of Object.keys(raw)) {
      if (BROKER_HEADERS.has(name)) {
        if (name === 'x-delivery-count') deliveryCount = count(numericHeader(wireHeaderValue(raw[name]), 0));
        continue;
      }
      addWireHeader(headers, name, amqpValue(raw[name]));
    }
  }
  const attempt = count(numericHeader(headers[HEADER.attempt], 1));
  const redeliveries = deliveryCount > 0 ? deliveryCount : message.fields.redelivered ? 1 : 0;
  const seconds = typeof props.timestamp === 'number' ? props.timestamp : Number.NaN;
  const ms = seconds * 1000;
  const topic = headers[HEADER.topic];
  const id = usableId(props.messageId) ? props.messageId : undefined;
  const { body, contentType } = decodedBody(message);
  return {
    // A random id, not a hash of the body: equal bodies from a foreign producer are distinct messages.
    id: id ?? randomUUID(),
    topic: topic === undefined || topic === '' ? message.fields.routingKey : topic,
    key: headers[HEADER.key],
    headers,
    timestamp: Number.isFinite(ms) && ms >= 0 && ms <= MAX_TIME ? ms : Date.now(),
    attempt: Math.max(1, attempt) + redeliveries,
    contentType,
    idGenerated: id === undefined,
    body,
  };
}

/** Typed field values amqplib decodes to a `{ '!': type, value }` wrapper. */
interface Typed {
  readonly '!': unknown;
  readonly value: unknown;
}

/**
 * amqplib hands AMQP timestamps and decimals over as `{ '!': 'timestamp' | 'decimal', value }`: they become a
 * Date (core's rule writes ISO text) and the decimal's text, instead of that wrapper as JSON.
 */
function amqpValue(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(amqpValue);
  if (typeof value !== 'object' || value === null || !Object.hasOwn(value, '!')) return value;
  const { '!': type, value: inner } = value as Typed;
  if (type === 'timestamp' && typeof inner === 'number') {
    const ms = inner * 1000;
    return Number.isFinite(ms) && Math.abs(ms) <= MAX_TIME ? new Date(ms) : String(inner);
  }
  if (type === 'decimal' && typeof inner === 'object' && inner !== null) {
    const { places, digits } = inner as { places?: unknown; digits?: unknown };
    if (typeof places === 'number' && typeof digits === 'number') return decimalText(digits, places);
  }
  return value;
}

/** `digits` x 10^-`places` as exact decimal text (12345, 2 -> '123.45'). */
function decimalText(digits: number, places: number): string {
  const text = String(Math.abs(digits));
  const sign = digits < 0 ? '-' : '';
  if (places <= 0) return sign + text;
  const padded = text.padStart(places + 1, '0');
  return `${sign}${padded.slice(0, -places)}.${padded.slice(-places)}`;
}

/** A non-negative integer count, 0 for anything else. */
function count(n: number): number {
  return Number.isSafeInteger(n) && n >= 0 ? n : 0;
}

/**
 * The AMQP header table must fit amqplib's 64 KiB field-table encoding buffer, and all properties the
 * content-header frame, bounded by the negotiated frame_max (128 KiB by default). Over the first amqplib
 * throws; over the second the broker closes the whole connection. Such a message is refused before sending.
 */
const MAX_HEADER_TABLE_BYTES = 65_536;
/** Room for the other properties (message id and content type up to 255 bytes each, timestamp, ...) and framing. */
const PROPERTY_ROOM = 1_024;

/** The largest header table a message may carry on a connection with this frame_max (0: unlimited). */
export function headerTableLimit(frameMax: number): number {
  return frameMax > 0 ? Math.min(MAX_HEADER_TABLE_BYTES, frameMax - PROPERTY_ROOM) : MAX_HEADER_TABLE_BYTES;
}

/** Throws an InvalidHeaderError (not retryable) when `headers` encode to more than `limit` bytes. */
export function checkHeaderSize(topic: string, headers: Readonly<Record<string, unknown>> | undefined, limit: number) {
  if (!headers) return;
  // An upper bound from string lengths first (a UTF-16 unit is at most 3 UTF-8 bytes): exact sizes only
  // for tables that could be near the limit. Each entry: name length, name, type, value length, value.
  let bound = 4;
  for (const name in headers) bound += 6 + 3 * name.length + 3 * String(headers[name]).length;
  if (bound <= limit) return;
  let size = 4;
  for (const name in headers) size += 6 + Buffer.byteLength(name) + Buffer.byteLength(String(headers[name]));
  if (size > limit) {
    throw new InvalidHeaderError(
      `Headers of the message for '${topic}' take ${size} bytes encoded, over RabbitMQ's limit of ${limit} bytes for the header table (amqplib's field-table buffer and the negotiated frame_max)`,
    );
  }
}

/** The largest body a compressed one may inflate to (busbar's default `maxPayloadBytes`): a bound against zip bombs. */
export const MAX_INFLATED_BYTES = 16 * 1024 * 1024;

const INFLATE: Readonly<Record<string, (body: Buffer, options: { maxOutputLength: number }) => Buffer>> = {
  gzip: gunzipSync,
  'x-gzip': gunzipSync,
  deflate: inflateSync,
  br: brotliDecompressSync,
};

/**
 * The body in its content type. AMQP `content_encoding` (set by foreign producers, never by busbar) says the
 * body was compressed: gzip, deflate and br are inflated (up to MAX_INFLATED_BYTES). A body that cannot be
 * (another encoding, corrupt data, too big) is handed over as it came, as `application/octet-stream`: it is
 * not in its content type, so decoding it as such would only fail. The original properties stay in `raw`.
 */
function decodedBody(message: ConsumeMessage): { body: Uint8Array; contentType: string | undefined } {
  const props = message.properties;
  const contentType = typeof props.contentType === 'string' && props.contentType !== '' ? props.contentType : undefined;
  const encoding = typeof props.contentEncoding === 'string' ? props.contentEncoding.trim().toLowerCase() : '';
  if (encoding === '' || encoding === 'identity') return { body: message.content, contentType };
  const inflate = Object.hasOwn(INFLATE, encoding) ? INFLATE[encoding] : undefined;
  if (inflate) {
    try {
      return { body: inflate(message.content, { maxOutputLength: MAX_INFLATED_BYTES }), contentType };
    } catch {
      // Corrupt or over the bound: the bytes as they came.
    }
  }
  return { body: message.content, contentType: 'application/octet-stream' };
}
