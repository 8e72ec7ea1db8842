import type { Delivery, IncomingRequest, Logger, ReplyRecord } from '@busbar/core/transport';
import type { Options } from 'amqplib';
import { checkHeaderSize, toBuffer } from './codec.js';
import { RabbitDelivery } from './delivery.js';

const ALREADY: Promise<void> = Promise.resolve();
const ignore = (): void => undefined;

export interface ReplyHooks {
  readonly headerLimit: () => number;
  readonly logger: Logger;
}

/**
 * A request delivery as an IncomingRequest. The reply goes to the default exchange with the request's
 * `replyTo` as routing key and its `correlationId` (direct reply-to, or any reply queue a non-busbar client
 * named), on the channel the request came on, and the request is acked right after it: never redelivered for
 * a retry, the caller is waiting and decides itself. Undefined for a request without `replyTo` (acked and
 * dropped).
 *
 * Not confirmed, as RabbitMQ's own RPC servers reply: a confirm of a direct reply-to publish says only that
 * the broker took it, not that the caller (whose channel may be gone) got it, and it cost a confirmed
 * publish on the publisher's connection plus a wait before the ack (about 20% of the CPU of a round trip).
 * Ordered frames give what matters: the broker sees the reply before the ack, so a request acked was answered,
 * and one whose channel died before its ack is redelivered to another responder.
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
    // Not async: the ack's own promise is the reply's (an async frame and its await were two more per request).
    reply: (reply: ReplyRecord) => {
      if (replied) return ALREADY;
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
        delivery.publishOnChannel(replyTo, toBuffer(reply.body), options);
      } catch (error) {
        // Acked all the same (a request is never redelivered for a retry), then the reply's failure reported.
        const failed = () => Promise.reject(error);
        return delivery.ack().then(failed, failed);
      }
      return delivery.ack().catch(ignore);
    },
  };
}
