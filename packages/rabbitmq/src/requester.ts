import { ClosedError, ConnectionError, NoRespondersError } from '@busbar/core';
import { type Logger, type OutgoingRecord, PendingReplies, type ReplyRecord } from '@busbar/core/transport';
import type { Channel, ConsumeMessage, Message } from 'amqplib';
import { checkHeaderSize, headerTableLimit, publishOptions, readMessage, toBuffer } from './codec.js';
import type { Link } from './link.js';
import { declareRpcExchange, REPLY_TO } from './rpc-topology.js';

export interface RequesterHooks {
  readonly exchange: string;
  readonly priorityHeader: string | undefined;
  readonly connectTimeoutMs: number;
  readonly logger: Logger;
  readonly toError: (error: unknown, what: string) => Error;
}

interface Pending {
  readonly topic: string;
  /** The channel the request went out on: its replies can only come back there. */
  channel: Channel | undefined;
}

/**
 * The requesting side of RabbitMQ direct reply-to: ONE channel per transport (opened on first use) consumes
 * the pseudo-queue `amq.rabbitmq.reply-to` in no-ack mode, and every request is published on that same channel
 * (the broker only routes replies to the channel that consumes it), `mandatory`, with `replyTo` and a
 * `correlationId`. Replies are matched by correlation id in one map: nothing per request outlives it but a
 * map entry and its timer, both removed when it settles.
 */
export class Requester {
  readonly #link: Link;
  readonly #hooks: RequesterHooks;
  readonly #pending = new PendingReplies<Pending>('RabbitMQ');

  /** Replies that found no pending request (late ones), dropped. */
  get lateReplies(): number {
    return this.#pending.late;
  }
  #opening: Promise<Channel> | undefined;
  #live: Channel | undefined;
  #closed = false;

  constructor(link: Link, hooks: RequesterHooks) {
    this.#link = link;
    this.#hooks = hooks;
  }

  request(record: OutgoingRecord, options: { timeoutMs: number; signal?: AbortSignal }): Promise<ReplyRecord> {
    if (this.#closed) return Promise.reject(new ClosedError('The RabbitMQ transport is closed'));
    const { timeoutMs } = options;
    const topic = record.topic;
    const correlationId = this.#pending.nextId();
    const entry: Pending = { topic, channel: undefined };
    return this.#pending.open(
      correlationId,
      topic,
      options,
      entry,
      () => {
        // With the channel up the request goes out now, within this call, as a broker client's publish does
        // (an abort right after the call does not unsend it); otherwise once the channel is open, unless the
        // request was settled meanwhile.
        const live = this.#live;
        if (live) return this.#send(live, record, correlationId, entry, timeoutMs);
        return this.#channel(Math.min(timeoutMs, this.#hooks.connectTimeoutMs)).then((channel) => {
          if (this.#pending.meta(correlationId) === entry) this.#send(channel, record, correlationId, entry, timeoutMs);
        });
      },
      (error) => this.#hooks.toError(error, `Request on '${topic}' failed`),
    );
  }

  #send(channel: Channel, record: OutgoingRecord, correlationId: string, entry: Pending, timeoutMs: number): void {
    const options = publishOptions(record, {
      // No responder queue bound: the broker returns the request at once (basic.return) instead of dropping it.
      mandatory: true,
      topicHeader: false,
      // A request nobody took in time is dropped by the broker: no responder works on an abandoned request.
      expiration: String(Math.max(1, Math.ceil(timeoutMs))),
      priorityHeader: this.#hooks.priorityHeader,
    });
    options.deliveryMode = 1;
    options.replyTo = REPLY_TO;
    options.correlationId = correlationId;
    checkHeaderSize(record.topic, options.headers, headerTableLimit(this.#link.frameMax));
    entry.channel = channel;
    // The return value only says amqplib buffered it (backpressure): the request is bounded by its timer anyway.
    channel.publish(this.#hooks.exchange, record.topic, toBuffer(record.body), options);
  }

  /** The reply channel, opened once and again after it is lost (reconnect, channel error). */
  #channel(timeoutMs: number): Promise<Channel> {
    this.#opening ??= this.#open(timeoutMs).catch((error: unknown) => {
      this.#opening = undefined;
      throw error;
    });
    return this.#opening;
  }

  async #open(timeoutMs: number): Promise<Channel> {
    const model = await this.#link.current(timeoutMs);
    const channel = await model.createChannel();
    channel.on('error', (error: Error) =>
      this.#hooks.logger.debug('Reply channel error', { error: this.#hooks.toError(error, 'Reply channel') }),
    );
    channel.on('close', () => this.#lost(channel));
    channel.on('return', (message: Message) => this.#returned(message));
    try {
      await declareRpcExchange(channel, this.#hooks.exchange);
      // Before any request goes out on this channel: the broker refuses replyTo without this consumer.
      await channel.consume(REPLY_TO, (message) => this.#reply(channel, message), { noAck: true });
    } catch (error) {
      await channel.close().catch(() => undefined);
      throw error;
    }
    if (this.#closed) {
      await channel.close().catch(() => undefined);
      throw new ClosedError('The RabbitMQ transport is closed');
    }
    this.#live = channel;
    return channel;
  }

  /** The channel is gone (connection lost, channel error): replies to requests sent on it can never arrive. */
  #lost(channel: Channel): void {
    if (this.#live === channel) {
      this.#live = undefined;
      this.#opening = undefined;
    }
    // It may have been served: the outcome is unknown, as after a timeout, so not retryable.
    this.#pending.rejectAll(
      (topic) =>
        new ConnectionError(
          `The reply channel for the request on '${topic}' was lost; it may or may not have been served`,
          { retryable: false },
        ),
      (entry) => entry.channel === channel,
    );
  }

  #returned(message: Message): void {
    const id = message.properties.correlationId;
    const entry = typeof id === 'string' ? this.#pending.meta(id) : undefined;
    if (entry) this.#pending.reject(id as string, new NoRespondersError(entry.topic));
  }

  #reply(channel: Channel, message: ConsumeMessage | null): void {
    if (message === null) {
      // The broker cancelled the reply consumer: start over on a new channel.
      void channel.close().catch(() => undefined);
      return;
    }
    const id = message.properties.correlationId;
    // A late reply (timed out, aborted) or someone else's: dropped.
    if (typeof id !== 'string') return;
    if (this.#pending.meta(id) === undefined) {
      this.#pending.dropLate();
      return;
    }
    const incoming = readMessage(message);
    this.#pending.resolve(id, { body: incoming.body, contentType: incoming.contentType, headers: incoming.headers });
  }

  /** Rejects every pending request and closes the reply channel; must run before the connection closes. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#pending.close();
    const channel = this.#live;
    this.#live = undefined;
    if (channel) await this.#link.closeStep(channel.close()).catch(() => undefined);
  }
}
