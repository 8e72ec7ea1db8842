import { InvalidTopicError } from '@busbar/core';
import type { Channel } from 'amqplib';
import type { ResolvedOptions } from './options.js';

/** RabbitMQ's direct reply-to pseudo-queue: consumed (no-ack) and named in `replyTo` on one channel. */
export const REPLY_TO = 'amq.rabbitmq.reply-to';

const MAX_NAME_BYTES = 255;

/**
 * Requests go to their own topic exchange `<exchange>.rpc`, not the event exchange: on the event exchange every
 * event queue bound to the topic would receive the requests as events (and responders would get the events),
 * and its alternate exchange would swallow a request nobody serves instead of returning it (no fast
 * NoRespondersError). Busbar declares it in both topology modes: it holds no queue of anyone else's.
 */
export function rpcExchangeName(options: ResolvedOptions): string {
  return `${options.exchange}.rpc`;
}

export async function declareRpcExchange(channel: Channel, exchange: string): Promise<void> {
  await channel.assertExchange(exchange, 'topic', { durable: true });
}

/**
 * The shared request queue of a responder group: `<topic>.<group>:rpc`. The `:` keeps it apart from every
 * event group queue `<topic>.<group>` (topic and group names cannot contain one), so `t.g.rpc` of topic `t.g`
 * and group `rpc` can never be the same queue.
 */
export function rpcQueueName(topic: string, group: string): string {
  const name = `${topic}.${group}:rpc`;
  if (Buffer.byteLength(name) > MAX_NAME_BYTES) {
    throw new InvalidTopicError(
      `Request queue name '${name.slice(0, 40)}...' for group '${group}' is over RabbitMQ's limit of 255 bytes`,
    );
  }
  return name;
}

/**
 * Declares the queue a responder consumes and binds it to the request exchange. A group shares one classic
 * durable auto-delete queue: the broker deletes it when its last responder leaves, so a request to a topic
 * nobody serves is unroutable and comes back at once; requests carry an expiration, so none piles up. Without
 * a group every responder has its own exclusive server-named queue (each one answers).
 */
export async function declareResponderQueue(
  channel: Channel,
  topic: string,
  group: string | undefined,
  options: ResolvedOptions,
): Promise<string> {
  const exchange = rpcExchangeName(options);
  await declareRpcExchange(channel, exchange);
  const args: Record<string, unknown> = { 'x-queue-type': 'classic' };
  let queue: string;
  if (group !== undefined) {
    if (options.queueExpiresMs !== undefined) args['x-expires'] = options.queueExpiresMs;
    queue = rpcQueueName(topic, group);
    await channel.assertQueue(queue, { durable: true, autoDelete: true, arguments: args });
  } else {
    ({ queue } = await channel.assertQueue('', { exclusive: true, autoDelete: true, durable: false, arguments: args }));
  }
  await channel.bindQueue(queue, exchange, topic);
  return queue;
}
