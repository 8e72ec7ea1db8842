import { InvalidTopicError } from '@busbar/core';
import { HEADER } from '@busbar/core/transport';
import type { Channel } from 'amqplib';
import type { ResolvedOptions } from './options.js';

const MAX_NAME_BYTES = 255;

/** The durable queue of a group: `<topic>.<group>` (unambiguous: groups have no dots). */
export function groupQueueName(topic: string, group: string): string {
  const name = `${topic}.${group}`;
  if (Buffer.byteLength(name) > MAX_NAME_BYTES) {
    throw new InvalidTopicError(
      `Queue name '${name.slice(0, 40)}...' for group '${group}' is over RabbitMQ's limit of 255 bytes`,
    );
  }
  return name;
}

/** RabbitMQ-specific topic rules on top of the portable grammar. */
export function checkTopic(topic: string): void {
  if (topic.startsWith('amq.'))
    throw new InvalidTopicError(`Topic '${topic}' starts with 'amq.', which RabbitMQ reserves`);
  if (Buffer.byteLength(topic) > MAX_NAME_BYTES)
    throw new InvalidTopicError(`Topic '${topic.slice(0, 40)}...' is over 255 bytes`);
}

/** Arguments of every group queue (they must match on every declaration, or the broker refuses it). */
export function groupQueueArguments(options: ResolvedOptions): Record<string, unknown> {
  const args: Record<string, unknown> = { 'x-queue-type': options.queueType };
  if (options.maxLength !== undefined) args['x-max-length'] = options.maxLength;
  if (options.maxLengthBytes !== undefined) args['x-max-length-bytes'] = options.maxLengthBytes;
  if (options.maxLength !== undefined || options.maxLengthBytes !== undefined) args['x-overflow'] = options.overflow;
  if (options.maxPriority !== undefined) args['x-max-priority'] = options.maxPriority;
  if (options.queueExpiresMs !== undefined) args['x-expires'] = options.queueExpiresMs;
  return args;
}

/** Binds `queue` so it receives `topic` (a pattern with `*`/`#` on a topic exchange). */
export async function bindTopic(
  channel: Channel,
  queue: string,
  topic: string,
  options: ResolvedOptions,
): Promise<void> {
  switch (options.exchangeType) {
    case 'fanout':
      await channel.bindQueue(queue, options.exchange, '');
      return;
    case 'headers':
      await channel.bindQueue(queue, options.exchange, '', { 'x-match': 'all', [HEADER.topic]: topic });
      return;
    default:
      await channel.bindQueue(queue, options.exchange, topic);
  }
}

/**
 * The main exchange (and, in `alternate-exchange` mode, the exchange + queue that keep unroutable messages).
 * With `topology: 'existing'` only a passive check: it must exist, whatever its arguments.
 */
export async function declareExchange(channel: Channel, options: ResolvedOptions): Promise<void> {
  if (options.topology === 'existing') {
    await channel.checkExchange(options.exchange);
    return;
  }
  const args: Record<string, unknown> = {};
  if (options.unroutable === 'alternate-exchange') {
    const name = `${options.exchange}.unroutable`;
    await channel.assertExchange(name, 'fanout', { durable: true });
    // Always quorum: buses with different queueType settings share this queue.
    const queueArgs: Record<string, unknown> = { 'x-queue-type': 'quorum' };
    if (options.queueExpiresMs !== undefined) queueArgs['x-expires'] = options.queueExpiresMs;
    await channel.assertQueue(name, { durable: true, arguments: queueArgs });
    await channel.bindQueue(name, name, '');
    args.alternateExchange = name;
  }
  await channel.assertExchange(options.exchange, options.exchangeType, { durable: true, ...args });
}

/**
 * Whether a queue exists (a passive declare). It runs on a channel of its own: a missing queue makes the
 * broker close the channel it was asked on.
 */
export type QueueProbe = (queue: string) => Promise<boolean>;

/**
 * Declares a group's durable queue and its binding. With `topology: 'existing'` a queue of that name that
 * exists already is used as it is (no arguments asserted: a classic queue, other limits), only bound.
 */
export async function declareGroupQueue(
  channel: Channel,
  topic: string,
  group: string,
  options: ResolvedOptions,
  exists: QueueProbe,
): Promise<string> {
  const queue = groupQueueName(topic, group);
  if (options.topology !== 'existing' || !(await exists(queue))) {
    await channel.assertQueue(queue, { durable: true, arguments: groupQueueArguments(options) });
  }
  await bindTopic(channel, queue, topic, options);
  return queue;
}

/** The smallest bucket >= delay (the largest bucket for longer delays). */
export function retryBucket(delayMs: number, buckets: readonly number[]): number {
  let best = 0;
  for (const b of buckets) {
    if (b >= delayMs && (best === 0 || b < best)) best = b;
  }
  return best || Math.max(...buckets);
}

/** `x-expires` of a retry queue: outlives every message in it by a wide margin (undefined: never expires). */
export function retryQueueExpiry(bucketMs: number, options: ResolvedOptions): number | undefined {
  if (options.queueExpiresMs === undefined) return undefined;
  return Math.max(options.queueExpiresMs, 2 * bucketMs + 60_000);
}

export function retryExchangeName(options: ResolvedOptions, bucketMs: number): string {
  return `${options.exchange}.retry.${bucketMs}`;
}

/**
 * One delay bucket: a fanout exchange and a durable queue whose messages all
 * have the same TTL (TTL only expires at the head, so one queue per delay).
 * Expired messages are dead-lettered to the default exchange with their
 * routing key, which is the group queue's name: they go back to that group only.
 */
export async function declareRetryBucket(
  channel: Channel,
  bucketMs: number,
  options: ResolvedOptions,
): Promise<string> {
  const name = retryExchangeName(options, bucketMs);
  const args: Record<string, unknown> = {
    'x-queue-type': options.queueType,
    'x-message-ttl': bucketMs,
    'x-dead-letter-exchange': '',
  };
  // Quorum queues can dead-letter at-least-once (classic queues: at most once); it needs reject-publish.
  if (options.queueType === 'quorum') {
    args['x-dead-letter-strategy'] = 'at-least-once';
    args['x-overflow'] = 'reject-publish';
  }
  const expires = retryQueueExpiry(bucketMs, options);
  if (expires !== undefined) args['x-expires'] = expires;
  await channel.assertExchange(name, 'fanout', { durable: true });
  await channel.assertQueue(name, { durable: true, arguments: args });
  await channel.bindQueue(name, name, '');
  return name;
}
