import { BusbarError, ClosedError, PublishError, TimeoutError } from '@busbar/core';
import { type Deferred, Deque, deferred } from '@busbar/core/transport';
import type { ConfirmChannel, Message, Options } from 'amqplib';
import { settledWithin } from './closing.js';
import { refusedWrite, toBusbarError } from './errors.js';
import type { Link } from './link.js';

/** One `publish()` call: resolves when every one of its messages is confirmed. */
interface Call {
  remaining: number;
  readonly deadline: number;
  done: boolean;
  readonly result: Deferred<void>;
}

export interface Outgoing {
  readonly exchange: string;
  readonly routingKey: string;
  readonly content: Buffer;
  readonly options: Options.Publish;
}

interface Entry extends Outgoing {
  readonly call: Call;
}

export interface PublisherSettings {
  readonly timeoutMs: number;
  readonly secrets: readonly string[];
  readonly onError: (message: string, error: unknown) => void;
  /** Runs on every new channel before publishing resumes (exchange declarations). */
  readonly prepare: (channel: ConfirmChannel) => Promise<void>;
  /** A failed `prepare` as a typed error. */
  readonly toError: (error: unknown) => BusbarError;
}

/**
 * Publishes on one confirm channel with many messages in flight: each
 * message's confirm settles its call; `basic.return` (mandatory) turns the
 * following ack into a rejection; when `publish` returns false the rest waits
 * for `drain`. One interval (not a timer per message) rejects calls whose
 * confirms are overdue with a retryable TimeoutError: the outcome is unknown.
 */
export class Publisher {
  readonly #link: Link;
  readonly #settings: PublisherSettings;
  #channel: ConfirmChannel | undefined;
  #opening: Promise<void> | undefined;
  #blocked = false;
  #queue: Entry[] = [];
  /** Calls in order of their deadlines (all share one timeout): the sweeper only looks at the front. */
  readonly #calls = new Deque<Call>();
  readonly #returned = new Map<string, number>();
  /** Why the broker closed a channel: a refused write fails its message for good, not as "outcome unknown". */
  readonly #closeReasons = new WeakMap<ConfirmChannel, Error>();
  #sweeper: NodeJS.Timeout | undefined;
  #closed = false;
  /**
   * The broker refused the exchange declaration (an exchange of that name with other arguments): publishes
   * fail with this ConfigError instead of waiting for a channel that cannot come until someone changes it.
   */
  #refused: BusbarError | undefined;
  #ready: Deferred<void> = deferred();

  constructor(link: Link, settings: PublisherSettings) {
    this.#link = link;
    this.#settings = settings;
    this.#ready.promise.catch(() => undefined);
    link.onUp(() => this.#open());
  }

  /** Resolves once the first channel is ready (exchanges declared). */
  ready(): Promise<void> {
    return this.#ready.promise;
  }

  publish(messages: readonly Outgoing[]): Promise<void> {
    if (this.#closed) return Promise.reject(new ClosedError('The RabbitMQ transport is closed'));
    if (this.#refused && !this.#channel) return Promise.reject(this.#refused);
    const call: Call = {
      remaining: messages.length,
      deadline: Date.now() + this.#settings.timeoutMs,
      done: false,
      result: deferred(),
    };
    if (messages.length === 0) return Promise.resolve();
    this.#calls.push(call);
    this.#sweeper ??= setInterval(
      () => this.#sweep(),
      Math.min(1_000, Math.max(10, Math.floor(this.#settings.timeoutMs / 10))),
    );
    let direct = this.#queue.length === 0;
    for (const m of messages) {
      const entry: Entry = {
        exchange: m.exchange,
        routingKey: m.routingKey,
        content: m.content,
        options: m.options,
        call,
      };
      // In order: once one message has to wait (no channel, no drain yet), the rest queue behind it.
      if (direct && !this.#blocked && this.#channel) direct = this.#write(this.#channel, entry);
      else {
        direct = false;
        this.#queue.push(entry);
      }
    }
    return call.result.promise;
  }

  /** Sends one message; false when the channel is gone and the entry was put back. */
  #write(channel: ConfirmChannel, entry: Entry): boolean {
    let ok: boolean;
    try {
      ok = channel.publish(entry.exchange, entry.routingKey, entry.content, entry.options, (error: unknown) =>
        this.#confirmed(entry, error, channel),
      );
    } catch (error) {
      // amqplib validates the message while encoding it (field types and sizes): nothing was sent, and
      // sending it again cannot help. Anything else means the channel closed under us.
      if (error instanceof RangeError || error instanceof TypeError) {
        this.#fail(entry.call, this.#publishError(entry, error));
        return true;
      }
      // The channel closed under us; its confirm callback was not registered, so the entry is still ours.
      this.#queue.unshift(entry);
      return false;
    }
    if (!ok && !this.#blocked) {
      this.#blocked = true;
      channel.once('drain', () => {
        this.#blocked = false;
        this.#flush();
      });
    }
    return true;
  }

  #flush(): void {
    let i = 0;
    while (i < this.#queue.length && this.#channel && !this.#blocked) {
      const entry = this.#queue[i++] as Entry;
      if (entry.call.done) continue;
      if (!this.#write(this.#channel, entry)) {
        this.#queue.splice(0, i);
        return;
      }
    }
    this.#queue.splice(0, i);
  }

  #confirmed(entry: Entry, error: unknown, channel: ConfirmChannel): void {
    const call = entry.call;
    const id = entry.options.messageId;
    let returned = false;
    if (id !== undefined && this.#returned.size > 0) {
      const count = this.#returned.get(id);
      if (count !== undefined) {
        returned = true;
        if (count <= 1) this.#returned.delete(id);
        else this.#returned.set(id, count - 1);
      }
    }
    if (call.done) return;
    if (error) {
      this.#fail(call, this.#publishError(entry, error, this.#closeReasons.get(channel)));
    } else if (returned) {
      this.#fail(
        call,
        new PublishError(
          `Message to '${entry.routingKey}' is unroutable: no queue is bound for it on '${entry.exchange || '(default)'}'`,
          {
            retryable: false,
          },
        ),
      );
    } else if (--call.remaining === 0) {
      call.done = true;
      call.result.resolve();
    }
  }

  #publishError(entry: Entry, error: unknown, closeReason?: Error): BusbarError {
    const what = `Publish to '${entry.routingKey}' failed`;
    // The confirm only says "channel closed"; the broker's reason for closing it says whether it was this message.
    const refused = closeReason && refusedWrite(closeReason, entry.exchange, entry.routingKey);
    if (refused) return new PublishError(`${what}: ${refused}`, { retryable: false });
    return toBusbarError(error, { what, op: 'publish', secrets: this.#settings.secrets });
  }

  #fail(call: Call, error: Error): void {
    if (call.done) return;
    call.done = true;
    call.result.reject(error);
  }

  #sweep(): void {
    const now = Date.now();
    let expired = false;
    for (let call = this.#calls.at(0); call !== undefined; call = this.#calls.at(0)) {
      if (!call.done) {
        if (call.deadline > now) break;
        expired = true;
        this.#fail(
          call,
          new TimeoutError(`Publish not confirmed within ${this.#settings.timeoutMs} ms: the outcome is unknown`),
        );
      }
      this.#calls.shift();
    }
    // Messages still waiting for a channel whose callers gave up: never send them later.
    if (expired && this.#queue.length > 0) this.#queue = this.#queue.filter((entry) => !entry.call.done);
    if (this.#calls.length === 0) {
      clearInterval(this.#sweeper);
      this.#sweeper = undefined;
    }
  }

  #open(): Promise<void> {
    this.#opening ??= this.#openChannel().finally(() => {
      this.#opening = undefined;
    });
    return this.#opening;
  }

  async #openChannel(): Promise<void> {
    const model = this.#link.model;
    if (this.#closed || !model) return;
    let channel: ConfirmChannel;
    try {
      channel = await model.createConfirmChannel();
      channel.on('error', (error: Error) => {
        this.#closeReasons.set(channel, error);
        this.#settings.onError('Publish channel error', error);
      });
      channel.on('return', (message: Message) => {
        const id = message.properties.messageId;
        if (typeof id === 'string') this.#returned.set(id, (this.#returned.get(id) ?? 0) + 1);
      });
      channel.on('close', () => this.#lost(channel));
      await this.#settings.prepare(channel);
    } catch (error) {
      this.#settings.onError('Opening the publish channel failed', error);
      const typed = this.#settings.toError(error);
      if (BusbarError.is(typed, 'BUSBAR_CONFIG')) {
        this.#refused = typed;
        for (const entry of this.#queue) this.#fail(entry.call, typed);
        this.#queue = [];
      }
      this.#ready.reject(typed);
      if (this.#link.model === model) setTimeout(() => void this.#open(), 1_000).unref();
      return;
    }
    this.#channel = channel;
    this.#blocked = false;
    this.#refused = undefined;
    this.#ready.resolve();
    this.#flush();
  }

  #lost(channel: ConfirmChannel): void {
    if (this.#channel !== channel) return;
    this.#channel = undefined;
    this.#blocked = false;
    // A channel-level close on a live connection (e.g. a 404 on a deleted exchange): open a new one.
    if (!this.#closed && this.#link.model) setTimeout(() => void this.#open(), 100).unref();
  }

  /** Waits for the confirms of what is in flight (bounded by the publish timeout), then closes the channel. */
  async close(deadline = Number.POSITIVE_INFINITY): Promise<void> {
    if (this.#closed) return;
    // Not drained: the sweeper still times them out one by one while close waits.
    const pending: Call[] = [];
    for (let i = 0; i < this.#calls.length; i++) {
      const call = this.#calls.at(i) as Call;
      if (!call.done) pending.push(call);
    }
    // A silent broker will not confirm them, and past core's deadline nobody waits: they fail now (outcome
    // unknown) instead of at their own deadline.
    if (!this.#link.silent && pending.length > 0) {
      await settledWithin(Promise.allSettled(pending.map((c) => c.result.promise)), deadline - Date.now());
    }
    this.#closed = true;
    clearInterval(this.#sweeper);
    this.#sweeper = undefined;
    const channel = this.#channel;
    this.#channel = undefined;
    for (const entry of this.#queue)
      this.#fail(entry.call, new ClosedError('The RabbitMQ transport closed before this message was sent'));
    this.#queue = [];
    for (const call of pending) {
      this.#fail(
        call,
        new TimeoutError('The RabbitMQ transport closed before the broker confirmed: the outcome is unknown'),
      );
    }
    if (channel) await this.#link.closeStep(channel.close());
  }
}
