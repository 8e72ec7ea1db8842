import { createHash } from 'node:crypto';
import { InvalidHeaderError } from '@busbar/core';
import { addWireHeader, HEADER, numericHeader, type OutgoingRecord, wireHeaderValue } from '@busbar/core/transport';
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
  /** Headers exchange: the topic travels in `busbar-topic`, which the bindings match. */
  readonly topicHeader: boolean;
  readonly expiration: string | undefined;
  readonly priorityHeader: string | undefined;
}

export function toBuffer(body: Uint8Array): Buffer {
  return Buffer.isBuffer(body) ? body : Buffer.from(body.buffer, body.byteOffset, body.byteLength);
}

/**
 * AMQP properties for a record: persistent, id in `messageId`, publish time
 * in `timestamp` (seconds, as AMQP defines it), key in `busbar-key` only when
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
  /** The AMQP `content_type`, undefined when absent or empty. */
  readonly contentType: string | undefined;
  /** No usable `message_id`: the id was derived from routing key, timestamp and body. */
  readonly idGenerated: boolean;
}

/** The largest time a JavaScript Date holds (ms); beyond it `new Date()` is Invalid Date. */
const MAX_TIME = 8.64e15;

/**
 * Reads a delivery. Header values of any AMQP type (numbers, booleans, arrays, tables, byte arrays, void,
 * timestamps) become strings by core's one rule for wire headers; the native values stay in `message.raw`.
 * The attempt is the `busbar-attempt` header (set by a delayed retry) plus the redeliveries the broker
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
      addWireHeader(headers, name, raw[name]);
    }
  }
  const attempt = count(numericHeader(headers[HEADER.attempt], 1));
  const redeliveries = deliveryCount > 0 ? deliveryCount : message.fields.redelivered ? 1 : 0;
  const seconds = typeof props.timestamp === 'number' ? props.timestamp : Number.NaN;
  const ms = seconds * 1000;
  const topic = headers[HEADER.topic];
  const id = typeof props.messageId === 'string' ? usableId(props.messageId) : undefined;
  return {
    id: id ?? derivedId(message),
    topic: topic === undefined || topic === '' ? message.fields.routingKey : topic,
    key: headers[HEADER.key],
    headers,
    timestamp: Number.isFinite(ms) && ms >= 0 && ms <= MAX_TIME ? ms : Date.now(),
    attempt: Math.max(1, attempt) + redeliveries,
    contentType: typeof props.contentType === 'string' && props.contentType !== '' ? props.contentType : undefined,
    idGenerated: id === undefined,
  };
}

/** A non-negative integer count, 0 for anything else. */
function count(n: number): number {
  return Number.isSafeInteger(n) && n >= 0 ? n : 0;
}

/** A message id from another producer, or undefined when it is empty, over 1 KB or has control characters. */
export function usableId(text: string): string | undefined {
  if (text === '' || Buffer.byteLength(text) > 1_024) return undefined;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c < 0x20 || (c >= 0x7f && c <= 0x9f)) return undefined;
  }
  return text;
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

/** Messages busbar did not publish may lack a usable `messageId`: derive a stable one from what redeliveries keep. */
function derivedId(message: ConsumeMessage): string {
  const hash = createHash('sha256');
  hash.update(message.fields.routingKey);
  hash.update(String(message.properties.timestamp ?? ''));
  hash.update(message.content);
  return `amqp-${hash.digest('hex').slice(0, 32)}`;
}
