import type { OutgoingRecord, ReplyRecord } from '@busbar/core/transport';
import {
  addWireHeader,
  attemptFromHeaders,
  HEADER,
  keepsOwnTimestamp,
  usableId,
  wireHeaderValue,
} from '@busbar/core/transport';
import type { IHeaders, KafkaMessage, Message } from 'kafkajs';
import { wireHeaderValues } from './internals.js';

/**
 * The names busbar 0.1 wrote before core's header registry: records of that version may still sit in retry
 * and dead-letter topics. Read under the registry's names (the registry's name wins when both are there).
 */
export const LEGACY_HEADER: Readonly<Record<string, string>> = {
  'busbar-kafka-partition': HEADER.sourcePartition,
  'busbar-kafka-offset': HEADER.sourceOffset,
};

/** Headers the driver adds to a record: text, or bytes where a foreign client's value must go back unchanged. */
export type WireHeaders = Readonly<Record<string, string | Buffer>>;

/** The CloudEvents Kafka binding maps the `partitionkey` extension to the record key (binding 3.1). */
const PARTITION_KEY = 'ce_partitionkey';

/** The native record behind a delivery (`message.raw` for Kafka). */
export interface KafkaRaw {
  /** The topic the record was read from (a retry topic for retried messages). */
  readonly topic: string;
  readonly partition: number;
  readonly offset: string;
  readonly key: Buffer | null;
  readonly headers: Readonly<
    Record<string, Buffer | string | null | undefined | (Buffer | string | null | undefined)[]>
  >;
  readonly timestamp: string;
  /** A null value (a tombstone of a compacted topic): the message body is empty. */
  readonly tombstone: boolean;
}

const EMPTY = new Uint8Array(0);

/**
 * The codec's content type travels in `content-type` (the CloudEvents Kafka binding's header); it is
 * `message.contentType`, not one of the message's headers. Read in any case, as other clients may write it.
 */
export const CONTENT_TYPE = 'content-type';

export function isContentType(name: string): boolean {
  return name.length === 12 && (name === CONTENT_TYPE || name.toLowerCase() === CONTENT_TYPE);
}

/** `application/json` or `*+json`, parameters and case aside. */
function isJson(contentType: string): boolean {
  const type = contentType.split(';', 1)[0]?.trim().toLowerCase() ?? '';
  return type === 'application/json' || type.endsWith('+json');
}

/**
 * A record to write as a tombstone (null value): the retry or dead letter of one (marked), or an empty body
 * labelled JSON, which no JSON codec writes (`null` is four bytes) and which is what a re-driven tombstone
 * looks like once the re-drive has dropped busbar's headers.
 */
function isTombstone(record: OutgoingRecord): boolean {
  if (record.body.byteLength !== 0) return false;
  return Object.hasOwn(record.headers, HEADER.tombstone) || isJson(record.contentType);
}

/** Rough bytes a record takes in a batch: body, key, headers and the per-record overhead. */
export function recordSize(record: OutgoingRecord): number {
  let size = record.body.byteLength + 70 + record.id.length + (record.key?.length ?? 0);
  for (const name in record.headers) size += name.length + (record.headers[name] as string).length + 2;
  if (record.contentType) size += CONTENT_TYPE.length + record.contentType.length + 2;
  return size;
}

/**
 * busbar record -> kafkajs message. The id travels in `busbar-id` (Kafka has no id field). The record's
 * time is set only when it is stale (a dead letter, a re-drive, an outbox row): otherwise kafkajs stamps the
 * send time itself, and a string timestamp costs kafkajs a Long parse per message (measured: about a third of
 * busbar's produce cost).
 */
export function toKafkaMessage(record: OutgoingRecord, extra: WireHeaders | undefined, now: number): Message {
  const headers: IHeaders = { ...record.headers, ...extra };
  // A reply has no message id (''): the correlation id is what its requester reads.
  if (record.id !== '') headers[HEADER.id] = record.id;
  const body = record.body;
  let value: Buffer | null;
  if (body.byteLength === 0 && isTombstone(record)) {
    // A tombstone has no content, so no content type either.
    delete headers[HEADER.tombstone];
    value = null;
  } else {
    if (record.contentType) headers[CONTENT_TYPE] = record.contentType;
    value = Buffer.from(body.buffer, body.byteOffset, body.byteLength);
  }
  const keyBytes = headers[HEADER.keyBytes];
  const key =
    typeof keyBytes === 'string'
      ? Buffer.from(keyBytes, 'base64')
      : (record.key ?? (headers[PARTITION_KEY] as string | undefined) ?? null);
  const message: Message = { key, value, headers };
  if (keepsOwnTimestamp(record, now)) message.timestamp = String(record.timestamp);
  return message;
}

type RawHeaders = Record<string, Buffer | string | null | undefined | (Buffer | string | null | undefined)[]>;

/**
 * kafkajs headers -> busbar's string headers, by core's one rule (null -> '', non-UTF-8 bytes -> base64,
 * repeated keys joined), own keys only. Also returns the raw headers without kafkajs' inherited artifacts.
 */
export function fromKafkaHeaders(raw: IHeaders | undefined): {
  headers: Record<string, string>;
  raw: RawHeaders;
  contentType: string | undefined;
} {
  const headers: Record<string, string> = {};
  let contentType: string | undefined;
  if (!raw) return { headers, raw: {}, contentType };
  let clean = raw as RawHeaders;
  for (const name of Object.keys(raw)) {
    const original = (raw as RawHeaders)[name];
    const value = wireHeaderValues(name, original);
    if (value !== original) {
      if (clean === raw) clean = { ...(raw as RawHeaders) };
      Object.defineProperty(clean, name, { value, enumerable: true, writable: true, configurable: true });
    }
    if (isContentType(name)) contentType ??= wireHeaderValue(Array.isArray(value) ? value[0] : value);
    else addWireHeader(headers, name, value);
  }
  for (const legacy in LEGACY_HEADER) {
    if (!Object.hasOwn(headers, legacy)) continue;
    const current = LEGACY_HEADER[legacy] as string;
    if (!Object.hasOwn(headers, current)) headers[current] = headers[legacy] as string;
    delete headers[legacy];
  }
  return { headers, raw: clean, contentType };
}

export interface DecodedRecord {
  readonly id: string;
  readonly topic: string;
  readonly key: string | undefined;
  readonly headers: Record<string, string>;
  readonly body: Uint8Array;
  readonly contentType: string | undefined;
  readonly timestamp: number;
  readonly attempt: number;
  readonly raw: KafkaRaw;
  /** Read from the group's retry topic (its headers hold the position of the first read). */
  readonly fromRetry: boolean;
}

/**
 * A fetched record as core sees it. Records of a retry topic report their
 * original topic; records not published by busbar get a stable id from their
 * position in the log.
 */
export function decode(
  topic: string,
  partition: number,
  message: KafkaMessage,
  fromRetryTopic: boolean,
): DecodedRecord {
  const { headers, raw, contentType } = fromKafkaHeaders(message.headers);
  const busbarId = headers[HEADER.id];
  // Kafka's own identity: a record's place in the log never changes, so redeliveries keep this id.
  const id = usableId(busbarId) ? busbarId : `${topic}-${partition}-${message.offset}`;
  const tombstone = message.value === null || message.value === undefined;
  return {
    id,
    topic: fromRetryTopic ? headers[HEADER.topic] || topic : topic,
    key: message.key === null || message.key === undefined ? undefined : message.key.toString('utf8'),
    headers,
    body: message.value ?? EMPTY,
    // A tombstone has no content: a content type it carries anyway is not applied to the empty body.
    contentType: tombstone ? undefined : contentType,
    timestamp: Number(message.timestamp),
    attempt: attemptFromHeaders(headers),
    fromRetry: fromRetryTopic,
    raw: {
      topic,
      partition,
      offset: message.offset,
      key: message.key ?? null,
      headers: raw,
      timestamp: message.timestamp,
      tombstone,
    },
  };
}

/**
 * Request/reply headers, named as Spring Kafka's ReplyingKafkaTemplate names them (KafkaHeaders), so a Spring
 * service can answer busbar's requests and ask busbar's responders.
 */
export const REPLY_HEADER = {
  /** On a request: the topic to reply to. */
  replyTopic: 'kafka_replyTopic',
  /** On a request and its reply: bytes the responder copies unchanged (Spring writes a 16-byte binary UUID). */
  correlationId: 'kafka_correlationId',
  /** On a request, optional: the partition of the reply topic to reply to (a 4-byte big-endian int). */
  replyPartition: 'kafka_replyPartition',
} as const;

/** One header's bytes as kafkajs delivered them (the first value of a repeated key). */
export function headerBytes(headers: IHeaders | undefined, name: string): Buffer | undefined {
  const value = headers?.[name];
  const first = Array.isArray(value) ? value[0] : value;
  if (first === undefined || first === null) return undefined;
  return typeof first === 'string' ? Buffer.from(first) : first;
}

/** A record on a reply topic as core's ReplyRecord: the correlation headers are the transport's, not the user's. */
export function decodeReply(message: KafkaMessage): ReplyRecord {
  const { headers, contentType } = fromKafkaHeaders(message.headers);
  for (const name of Object.values(REPLY_HEADER)) delete headers[name];
  delete headers[HEADER.id];
  return { body: message.value ?? EMPTY, contentType, headers };
}
