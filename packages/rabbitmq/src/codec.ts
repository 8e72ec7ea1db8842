import { createHash } from 'node:crypto';
import { HEADER, type OutgoingRecord } from '@busbar/core/transport';
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
    contentType: record.contentType,
  };
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
}

function headerText(value: unknown): string | undefined {
  if (typeof value === 'string') return value;
  if (typeof value === 'number' || typeof value === 'boolean' || typeof value === 'bigint') return String(value);
  if (Buffer.isBuffer(value)) return value.toString('utf8');
  return undefined;
}

/**
 * Reads a delivery. The attempt is the `busbar-attempt` header (set by a
 * delayed retry) plus the redeliveries the broker counted since: the quorum
 * queue's `x-delivery-count`, or 1 for a classic queue's `redelivered` flag.
 */
export function readMessage(message: ConsumeMessage): Incoming {
  const props = message.properties;
  const raw = props.headers;
  const headers: Record<string, string> = {};
  let deliveryCount = 0;
  if (raw) {
    for (const name in raw) {
      if (BROKER_HEADERS.has(name)) {
        if (name === 'x-delivery-count') deliveryCount = Number(raw[name]) || 0;
        continue;
      }
      const text = headerText(raw[name]);
      if (text !== undefined) headers[name] = text;
    }
  }
  let base = 1;
  const attemptHeader = headers[HEADER.attempt];
  if (attemptHeader !== undefined) {
    const n = Number.parseInt(attemptHeader, 10);
    if (Number.isFinite(n) && n >= 1) base = n;
  }
  const redeliveries = deliveryCount > 0 ? deliveryCount : message.fields.redelivered ? 1 : 0;
  const seconds = typeof props.timestamp === 'number' ? props.timestamp : undefined;
  return {
    id: typeof props.messageId === 'string' && props.messageId !== '' ? props.messageId : derivedId(message),
    topic: headers[HEADER.topic] ?? message.fields.routingKey,
    key: headers[HEADER.key],
    headers,
    timestamp: seconds === undefined ? Date.now() : seconds * 1000,
    attempt: base + redeliveries,
  };
}

/** Messages busbar did not publish may lack a `messageId`: derive a stable one from what redeliveries keep. */
function derivedId(message: ConsumeMessage): string {
  const hash = createHash('sha256');
  hash.update(message.fields.routingKey);
  hash.update(String(message.properties.timestamp ?? ''));
  hash.update(message.content);
  return `amqp-${hash.digest('hex').slice(0, 32)}`;
}
