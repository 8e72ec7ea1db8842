import type { BusbarError } from '@busbar/core';
import { type NativeErrorContext, type RetryRequest, SettleOnce } from '@busbar/core/transport';
import type { ConsumeMessage, Options } from 'amqplib';
import { type ChannelAcks, stale } from './acks.js';
import type { Incoming } from './codec.js';
import { toBusbarError } from './errors.js';

/** Where a delivery's retry goes: its consumer, which puts a copy on its delayed way back to `queue`. */
export interface RetrySink {
  retryTo(queue: string, delivery: RabbitDelivery, request: RetryRequest): Promise<void>;
}

/** A delivery from one channel; its settle methods act on that channel only. */
export class RabbitDelivery extends SettleOnce<ConsumeMessage> {
  readonly #acks: ChannelAcks;
  readonly #sink: RetrySink;
  readonly #queue: string;

  constructor(message: ConsumeMessage, incoming: Incoming, acks: ChannelAcks, sink: RetrySink, queue: string) {
    super(incoming, message);
    this.#acks = acks;
    this.#sink = sink;
    this.#queue = queue;
  }

  /**
   * Publishes on the channel this delivery came on, unconfirmed (direct reply-to). A reply sent here before the
   * request's ack reaches the broker before that ack: AMQP keeps a channel's frames in order. Throws when the
   * channel is closed (the broker redelivers the request then).
   */
  publishOnChannel(routingKey: string, content: Buffer, options: Options.Publish): void {
    if (!this.#acks.alive) throw stale();
    this.#acks.channel.publish('', routingKey, content, options);
  }

  /** Queued for this turn's ack frame, not awaited (see ChannelAcks.queue): core spends no promise on it. */
  protected ackNative(): undefined {
    this.#acks.queue(this.raw.fields.deliveryTag);
    return undefined;
  }

  protected async retryNative(request: RetryRequest): Promise<void> {
    // A dead channel cannot ack, and the broker redelivers the original anyway: no copy is written, and the
    // retry fails (the delivery stays open, so core can still release it).
    if (!this.#acks.alive) return this.#acks.ack(this.raw.fields.deliveryTag);
    await this.#sink.retryTo(this.#queue, this, request);
    await this.#acks.ack(this.raw.fields.deliveryTag);
  }

  protected releaseNative(): undefined {
    this.#acks.nack(this.raw.fields.deliveryTag, true);
    return undefined;
  }

  /** By this driver's classifier: a closed channel stays the ConnectionError it is. */
  protected override mapError(error: unknown, context: NativeErrorContext): BusbarError {
    return toBusbarError(error, context);
  }
}
