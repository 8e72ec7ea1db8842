import type { OutgoingRecord } from '@busbar/core/transport';
import { attemptFromHeaders, HEADER, keepsOwnTimestamp } from '@busbar/core/transport';
import type { IHeaders, KafkaMessage, Message } from 'kafkajs';

/** Driver headers: when a retried message is due, and where a message was first read (on retries and dead letters). */
export const KAFKA_HEADER = {
  due: 'busbar-due',
  partition: 'busbar-kafka-partition',
  offset: 'busbar-kafka-offset',
} as const;

/** The native record behind a delivery (`message.raw` for Kafka). */
export interface KafkaRaw {
  /** The topic the record was read from (a retry topic for retried messages). */
  readonly topic: string;
  readonly partition: number;
  readonly offset: string;
  readonly key: Buffer | null;
  readonly headers: Readonly<Record<string, Buffer | string | (Buffer | string)[] | undefined>> | undefined;
  readonly timestamp: string;
}

const EMPTY = new Uint8Array(0);

/** Rough bytes a record takes in a batch: body, key, headers and the per-record overhead. */
export function recordSize(record: OutgoingRecord): number {
  let size = record.body.byteLength + 70 + record.id.length + (record.key?.length ?? 0);
  for (const name in record.headers) size += name.length + (record.headers[name] as string).length + 2;
  return size;
}

/**
 * busbar record -> kafkajs message. The id travels in `busbar-id` (Kafka has no id field). The record's
 * time is set only when it is stale (a dead letter, a re-drive, an outbox row): otherwise kafkajs stamps the
 * send time itself, and a string timestamp costs kafkajs a Long parse per message (measured: about a third of
 * busbar's produce cost).
 */
export function toKafkaMessage(
  record: OutgoingRecord,
  extra: Readonly<Record<string, string>> | undefined,
  now: number,
): Message {
  const headers: IHeaders = { ...record.headers, ...extra, [HEADER.id]: record.id };
  const body = record.body;
  const message: Message = {
    key: record.key ?? null,
    value: Buffer.from(body.buffer, body.byteOffset, body.byteLength),
    headers,
  };
  if (keepsOwnTimestamp(record, now)) message.timestamp = String(record.timestamp);
  return message;
}

function headerText(value: IHeaders[string]): string | undefined {
  if (value === undefined) return undefined;
  if (Array.isArray(value)) return headerText(value[value.length - 1]);
  return typeof value === 'string' ? value : value.toString('utf8');
}

/** kafkajs headers -> busbar's string headers, own keys only. */
export function fromKafkaHeaders(raw: IHeaders | undefined): Record<string, string> {
  const out: Record<string, string> = {};
  if (!raw) return out;
  for (const name of Object.keys(raw)) {
    if (name === '__proto__') continue;
    const text = headerText(raw[name]);
    if (text !== undefined) out[name] = text;
  }
  return out;
}

export interface DecodedRecord {
  readonly id: string;
  readonly topic: string;
  readonly key: string | undefined;
  readonly headers: Record<string, string>;
  readonly body: Uint8Array;
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
  const headers = fromKafkaHeaders(message.headers);
  const id = headers[HEADER.id] ?? `${topic}-${partition}-${message.offset}`;
  return {
    id,
    topic: fromRetryTopic ? (headers[HEADER.topic] ?? topic) : topic,
    key: message.key === null || message.key === undefined ? undefined : message.key.toString('utf8'),
    headers,
    body: message.value ?? EMPTY,
    timestamp: Number(message.timestamp),
    attempt: attemptFromHeaders(headers),
    fromRetry: fromRetryTopic,
    raw: {
      topic,
      partition,
      offset: message.offset,
      key: message.key ?? null,
      headers: message.headers,
      timestamp: message.timestamp,
    },
  };
}
