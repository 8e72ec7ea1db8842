import type { Delivery, IncomingRequest, Logger, ReplyRecord } from '@busbar/core/transport';
import type { Options } from 'amqplib';
import { checkHeaderSize, toBuffer } from './codec.js';
import { RabbitDelivery } from './delivery.js';
import type { Outgoing } from './publisher.js';

export interface ReplyHooks {
  /** Publishes confirmed (the transport's publisher). */
  readonly publish: (messages: readonly Outgoing[]) => Promise<void>;
  readonly headerLimit: () => number;
  readonly logger: Logger;
}

/**
 * A request delivery as an IncomingRequest. The reply goes to the default exchange with the request's
 * `replyTo` as routing key and its `correlationId` (direct reply-to, or any reply queue a non-busbar client
 * named), confirmed; the request is acked once the reply is out (or failed), never redelivered for a retry:
 * the caller is waiting and decides itself. Undefined for a request without `replyTo` (acked and dropped).
 */
export function toIncomingRequest(delivery: Delivery, hooks: ReplyHooks): IncomingRequest | undefined {
  if (!(delivery instanceof RabbitDelivery)) throw new TypeError('not a RabbitMQ delivery');
  const props = delivery.raw.properties;
  const replyTo: unknown = props.replyTo;
  if (typeof replyTo !== 'string' || replyTo === '') {
    hooks.logger.warn(`A request on '${delivery.topic}' has no replyTo: it cannot be answered and is dropped`);
    void delivery.ack().catch(() => undefined);
    return undefined;
  }
  const correlationId: unknown = props.correlationId;
  let replied = false;
  return {
    id: delivery.id,
    topic: delivery.topic,
    headers: delivery.headers,
    body: delivery.body,
    contentType: delivery.contentType,
    timestamp: delivery.timestamp,
    raw: delivery.raw,
    reply: async (reply: ReplyRecord) => {
      if (replied) return;
      replied = true;
      try {
        const options: Options.Publish = { deliveryMode: 1, mandatory: false };
        if (typeof correlationId === 'string') options.correlationId = correlationId;
        if (reply.contentType !== undefined && reply.contentType !== '') options.contentType = reply.contentType;
        for (const _ in reply.headers) {
          options.headers = { ...reply.headers };
          break;
        }
        checkHeaderSize(delivery.topic, options.headers, hooks.headerLimit());
        await hooks.publish([{ exchange: '', routingKey: replyTo, content: toBuffer(reply.body), options }]);
      } finally {
        await delivery.ack().catch(() => undefined);
      }
    },
  };
}
