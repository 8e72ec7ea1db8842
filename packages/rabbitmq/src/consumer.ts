import { BusbarError, TimeoutError } from '@busbar/core';
import type {
  Logger,
  RetryRequest,
  SubscribeCallbacks,
  SubscribeSpec,
  TransportSubscription,
} from '@busbar/core/transport';
import { withTimeout } from '@busbar/core/transport';
import type { Channel, ChannelModel, ConsumeMessage } from 'amqplib';
import { ChannelAcks } from './acks.js';
import { readMessage } from './codec.js';
import { RabbitDelivery, type RetrySink } from './delivery.js';
import type { Link } from './link.js';

export interface ConsumerHooks {
  readonly logger: Logger;
  /** Declares the queue on the new channel (group queue or a server-named broadcast queue); returns its name. */
  readonly declare: (channel: Channel) => Promise<string>;
  /** Puts a copy of the delivery on its delayed way back to `queue` (confirmed). */
  readonly retry: (queue: string, delivery: RabbitDelivery, request: RetryRequest) => Promise<void>;
  readonly toError: (error: unknown, what: string) => Error;
}

/**
 * One subscription: its own channel (prefetch = the spec's), queue and
 * consumer, re-created on every reconnect and after a channel-level close
 * while the connection stays up.
 */
export class Consumer implements TransportSubscription, RetrySink {
  readonly #link: Link;
  readonly #spec: SubscribeSpec;
  readonly #callbacks: SubscribeCallbacks;
  readonly #hooks: ConsumerHooks;
  #acks: ChannelAcks | undefined;
  #consumerTag: string | undefined;
  #stopped = false;
  #closed = false;
  #opening: Promise<void> | undefined;
  #offUp: () => void = () => undefined;

  constructor(link: Link, spec: SubscribeSpec, callbacks: SubscribeCallbacks, hooks: ConsumerHooks) {
    this.#link = link;
    this.#spec = spec;
    this.#callbacks = callbacks;
    this.#hooks = hooks;
  }

  /**
   * First start: errors (bad queue arguments, refused names) reject the subscribe call. A connection lost
   * while the channel opens is not this subscription's failure: it opens on the next connection amqplib's
   * recovery brings up, within the same wait.
   */
  async start(waitMs: number): Promise<void> {
    const deadline = Date.now() + waitMs;
    try {
      for (;;) {
        const model = await this.#link.current(Math.max(1, deadline - Date.now())).catch((error) => {
          throw this.#hooks.toError(error, 'Subscribing failed');
        });
        try {
          // Bounded: a broker that stops answering (the TCP connection still up) would otherwise hold subscribe
          // until the heartbeat gives the connection up (three heartbeats: 30 s by default).
          const left = Math.max(1, deadline - Date.now());
          await withTimeout(
            this.#openOn(model, true),
            left,
            () =>
              new TimeoutError(
                `Subscribing to '${this.#spec.topic}' timed out after ${waitMs} ms (the broker did not answer)`,
              ),
          );
          break;
        } catch (error) {
          if (BusbarError.is(error, 'BUSBAR_TIMEOUT')) throw error;
          if (!(await this.#lost(model)) || this.#stopped || Date.now() >= deadline) throw error;
        }
      }
      // Only now: a reconnect during the first open must not open a second channel beside it.
      if (!this.#stopped) this.#offUp = this.#link.onUp((next) => void this.#reopen(next));
    } catch (error) {
      this.#stopped = true;
      this.#closed = true;
      this.#offUp();
      throw error;
    }
  }

  /** Whether `model` is gone (amqplib reports the close of the connection just after that of its channels). */
  async #lost(model: ChannelModel): Promise<boolean> {
    if (this.#link.model !== model) return true;
    await new Promise((resolve) => setImmediate(resolve));
    return this.#link.model !== model;
  }

  retryTo(queue: string, delivery: RabbitDelivery, request: RetryRequest): Promise<void> {
    return this.#hooks.retry(queue, delivery, request);
  }

  #reopen(model: ChannelModel): Promise<void> {
    if (this.#stopped || this.#link.model !== model) return Promise.resolve();
    this.#opening ??= this.#openOn(model, false)
      .catch((error) => {
        // The connection went away meanwhile: its recovery re-opens us.
        if (this.#link.model !== model || this.#stopped) return;
        this.#callbacks.onError(this.#hooks.toError(error, `Re-subscribing to '${this.#spec.topic}' failed`));
        setTimeout(() => {
          const current = this.#link.model;
          if (current && !this.#stopped) void this.#reopen(current);
        }, 1_000).unref();
      })
      .finally(() => {
        this.#opening = undefined;
      });
    return this.#opening;
  }

  async #openOn(model: ChannelModel, first: boolean): Promise<void> {
    if (this.#acks?.alive) return;
    let channel: Channel | undefined;
    try {
      channel = await model.createChannel();
      const acks = new ChannelAcks(channel, (count, error) =>
        this.#hooks.logger.warn(
          `${count} ack(s) on '${this.#spec.topic}' were lost with their channel; RabbitMQ redelivers those messages`,
          { error },
        ),
      );
      channel.on('error', (error: Error) =>
        this.#hooks.logger.debug('Consumer channel error', { error: this.#hooks.toError(error, 'Channel') }),
      );
      channel.on('close', () => this.#channelClosed(acks));
      await channel.prefetch(Math.max(1, Math.min(65_535, this.#spec.prefetch)));
      const queue = await this.#hooks.declare(channel);
      this.#acks = acks;
      const ok = await channel.consume(queue, (message) => this.#receive(acks, queue, message), { noAck: false });
      this.#consumerTag = ok.consumerTag;
      // The subscribe that opened it gave up meanwhile (its timeout): nothing may consume for it.
      if (this.#stopped && first) {
        await channel.close().catch(() => undefined);
        return;
      }
    } catch (error) {
      await channel?.close().catch(() => undefined);
      throw first ? this.#hooks.toError(error, `Subscribing to '${this.#spec.topic}' failed`) : error;
    }
  }

  #receive(acks: ChannelAcks, queue: string, message: ConsumeMessage | null): void {
    if (message === null) {
      // The broker cancelled the consumer (queue deleted, node down): start over on a new channel.
      this.#callbacks.onError(new Error(`RabbitMQ cancelled the consumer of '${queue}'; re-subscribing`));
      void acks.channel.close().catch(() => undefined);
      return;
    }
    const tag = message.fields.deliveryTag;
    acks.delivered(tag);
    if (this.#stopped) {
      try {
        acks.nack(tag, true);
      } catch {
        // The channel is gone: the broker requeues it anyway.
      }
      return;
    }
    this.#callbacks.onDelivery(new RabbitDelivery(message, readMessage(message), acks, this, queue));
  }

  #channelClosed(acks: ChannelAcks): void {
    acks.dead();
    if (this.#acks !== acks) return;
    this.#acks = undefined;
    this.#consumerTag = undefined;
    // Channel-level close on a live connection (consumer timeout, deleted queue): re-create it.
    setTimeout(() => {
      const model = this.#link.model;
      if (model && !this.#stopped) void this.#reopen(model);
    }, 200).unref();
  }

  async stop(): Promise<void> {
    if (this.#stopped) return;
    this.#stopped = true;
    this.#offUp();
    await this.#opening?.catch(() => undefined);
    const acks = this.#acks;
    const tag = this.#consumerTag;
    if (acks?.alive && tag) await this.#link.closeStep(acks.channel.cancel(tag));
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    await this.stop();
    this.#closed = true;
    const acks = this.#acks;
    this.#acks = undefined;
    if (acks?.alive) {
      await acks.drain();
      // Closing the channel requeues whatever is still unacked.
      await this.#link.closeStep(acks.channel.close());
    }
  }
}
