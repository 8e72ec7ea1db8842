import { inspect } from 'node:util';
import type { BatchHandler } from './batch.js';
import type { Connections } from './connections.js';
import { MessageStream } from './consume.js';
import { AbortedError, BusbarError, ClosedError, ConfigError } from './errors.js';
import { disconnect, type GroupLag, type Health, healthOf, lagOf } from './lifecycle.js';
import type { Logger } from './logger.js';
import type { Handler, Message } from './message.js';
import { type ConsumeMiddleware, type Middleware, MiddlewareChains } from './middleware.js';
import { assertGroupName } from './names.js';
import {
  parseOptions,
  respondOptionsSchema,
  type SubscribeBatchOptions,
  type SubscribeOptions,
  subscribeBatchOptionsSchema,
  subscribeOptionsSchema,
} from './options.js';
import { ABORTED_VALIDATING, ABORTED_WAITING, Outbound } from './outbound.js';
import { BATCH_ENTRY_KEYS, type BatchEntry, type PublishOptions } from './publish.js';
import { sanitizeError } from './redact.js';
import {
  type DeadLetterWalkOptions,
  peekDeadLetters,
  purgeDeadLetters,
  type RedriveOptions,
  redrive,
} from './redrive.js';
import { checkRequestOptions, type RequestOptions, Requests, type Responder, type RespondOptions } from './request.js';
import { responderHandle } from './respond.js';
import { signalOf } from './signal.js';
import type { Subscription } from './subscription/index.js';
import { assertPatternSupported, closeOnAbort, Subscriptions, subscribeArguments } from './subscriptions.js';
import { toFailure } from './thrown.js';
import { type Topic, type TopicLike, toTopic } from './topic.js';
import type { Capabilities, OutgoingRecord, Transport } from './transport/spi.js';
import { abortable } from './transport/util.js';

export type { GroupLag, Health } from './lifecycle.js';
export type { BatchEntry, PublishOptions } from './publish.js';
export type { DeadLetterWalkOptions, RedriveOptions } from './redrive.js';

export interface BusInit {
  readonly transport: Transport;
  readonly system: string;
  readonly redactedUrl: string;
  readonly logger: Logger;
  readonly maxPayloadBytes: number;
  readonly closeTimeoutMs: number;
  readonly secrets: readonly string[];
  readonly connections: Connections;
}

/** A connection to one broker: publish, subscribe, read and re-drive dead letters. Created by `connect()`. */
export class Bus {
  readonly #init: BusInit;
  readonly #transport: Transport;
  readonly #subscriptions: Subscriptions;
  readonly #out: Outbound;
  readonly #middleware = new MiddlewareChains();
  readonly #responders = new Set<Subscription>();
  readonly #requests: Requests;
  #closing: Promise<void> | undefined;

  constructor(init: BusInit) {
    this.#init = init;
    this.#transport = init.transport;
    this.#requests = new Requests(
      init.transport.requestReply,
      init.system,
      init.logger,
      Math.min(init.maxPayloadBytes, init.transport.maxPayloadBytes),
      (error) => this.#clean(error),
    );
    this.#out = new Outbound(init.transport, init.system, init.maxPayloadBytes, init.secrets);
    this.#subscriptions = new Subscriptions({
      transport: init.transport,
      system: init.system,
      logger: init.logger,
      closeTimeoutMs: init.closeTimeoutMs,
      middleware: () => this.#middleware.consume,
      checkTopic: (name, use) => this.#out.checkTopic(name, use),
      clean: (error) => this.#clean(error),
    });
    // Not public API (not on the type): lets a test see that nothing is left per request or subscription, through
    // a registry symbol so that @busbar/testing needs no internal import.
    Object.defineProperty(this, Symbol.for('busbar.diagnostics'), {
      value: () => ({
        ...this.#requests.diagnostics(),
        subscriptions: this.#subscriptions.stats().length,
        responders: this.#responders.size,
      }),
    });
  }

  /** The transport's name: 'memory', 'rabbitmq', 'kafka', 'nats', 'redis', 'mqtt'. */
  get transport(): string {
    return this.#init.system;
  }

  get capabilities(): Capabilities {
    return { ...this.#transport.capabilities, requestReply: this.#transport.requestReply !== undefined };
  }

  /**
   * Publishes one message. Resolves with its id once the broker has taken
   * responsibility for it (confirm / acks=all / PubAck / XADD / PUBACK).
   * Invalid topic, headers, schema, size or payload reject before anything is sent.
   */
  publish<T>(topic: TopicLike<T>, payload: T, options?: PublishOptions): Promise<string> {
    // Not async: the driver's promise and one reaction per message (an async frame cost two promises more).
    try {
      const def = toTopic(topic);
      const signal = options?.signal;
      if (signal?.aborted)
        throw new AbortedError('Publish aborted before sending: nothing was sent', { cause: signal.reason });
      if (this.#middleware.publish.length !== 0) return this.#publishIntercepted(def, payload, options);
      const pending = this.#record(def, payload, options);
      if (pending instanceof Promise) return pending.then((record) => this.#out.sendOne(def.name, record, signal));
      return this.#out.sendOne(def.name, pending, signal);
    } catch (error) {
      return Promise.reject(error);
    }
  }

  async #publishIntercepted<T>(def: Topic<T>, payload: T, options: PublishOptions | undefined): Promise<string> {
    const record = await this.#record(def, payload, await this.#middleware.intercept(def.name, payload, options));
    return this.#out.sendOne(def.name, record, options?.signal);
  }

  /** Publishes many messages to one topic in as few round trips as the broker allows. Resolves with their ids. */
  async publishBatch<T>(
    topic: TopicLike<T>,
    entries: readonly BatchEntry<T>[],
    options: { signal?: AbortSignal } = {},
  ): Promise<string[]> {
    if (signalOf(options, 'publishBatch options')?.aborted) {
      throw new AbortedError('Publish aborted before sending: nothing was sent');
    }
    if (!Array.isArray(entries))
      throw new ConfigError('publishBatch needs an array of { payload, key?, headers?, id? }');
    const def = toTopic(topic);
    const records: OutgoingRecord[] = [];
    for (const entry of entries) {
      if (typeof entry !== 'object' || entry === null)
        throw new ConfigError('publishBatch entries must be objects with a payload');
      // The entry itself carries the options (no copy per entry); 'payload' is the one extra key allowed.
      const effective =
        this.#middleware.publish.length === 0
          ? entry
          : await this.#middleware.intercept(def.name, entry.payload, entry, BATCH_ENTRY_KEYS, options.signal);
      const pending = this.#record(def, entry.payload, effective, BATCH_ENTRY_KEYS);
      records.push(pending instanceof Promise ? await abortable(pending, options.signal, ABORTED_VALIDATING) : pending);
    }
    if (records.length > 0) await abortable(this.#out.send(def.name, records), options.signal, ABORTED_WAITING);
    return records.map((r) => r.id);
  }

  /**
   * Registers middleware for this bus: `consume` wraps the handler of every subscription made from now on
   * (first registered = outermost, then the subscription's own `middleware`, then the handler); `publish`
   * runs before each message is published, in registration order. A function is a consume middleware.
   */
  use(middleware: Middleware | ConsumeMiddleware): this {
    this.#middleware.use(middleware);
    return this;
  }

  #record<T>(
    def: Topic<T>,
    payload: T,
    options: PublishOptions | undefined,
    keys?: ReadonlySet<string>,
  ): OutgoingRecord | Promise<OutgoingRecord> {
    if (this.#closing) throw new ClosedError('The bus is closed: publish rejected');
    return this.#out.record(def, payload, options, keys);
  }

  /**
   * Subscribes a handler. A handler that resolves acks the message; one that
   * throws is retried with backoff, then dead-lettered. With a `group`,
   * members share the work and the group is durable; without, every
   * subscriber sees messages published from now on.
   */
  async subscribe<T>(topic: TopicLike<T>, handler: Handler<T>, options: SubscribeOptions = {}): Promise<Subscription> {
    const def = this.#subscribable(topic, handler);
    const { signal, resolved } = subscribeArguments(subscribeOptionsSchema, options, 'subscribe options');
    return closeOnAbort(await this.#subscriptions.open(def, handler, resolved), signal);
  }

  /**
   * Subscribes a handler that takes messages in batches (up to `batch.maxSize`, or what arrived within
   * `batch.maxWaitMs`), for bulk inserts and bulk APIs. Every message keeps its own outcome: resolving acks the
   * batch, `context.fail(message, error)` retries (then dead-letters) one message, a throw fails them all.
   * Idempotency and retries work per message; one batch runs at a time, so messages of a key stay in order.
   */
  async subscribeBatch<T>(
    topic: TopicLike<T>,
    handler: BatchHandler<T>,
    options: SubscribeBatchOptions = {},
  ): Promise<Subscription> {
    const def = this.#subscribable(topic, handler);
    const { signal, resolved } = subscribeArguments(subscribeBatchOptionsSchema, options, 'subscribeBatch options');
    return closeOnAbort(await this.#subscriptions.openBatch(def, handler, resolved), signal);
  }

  #subscribable<T>(topic: TopicLike<T>, handler: unknown): Topic<T> {
    if (this.#closing) throw new ClosedError('The bus is closed: subscribe rejected');
    if (typeof handler !== 'function') throw new ConfigError('subscribe needs a handler function');
    return toTopic(topic);
  }

  /**
   * Sends a request and resolves with the reply, over the broker's own request/reply mechanism (foreign
   * services can answer or ask). The payload and the reply are validated by the topic's schema and `response`
   * schema. Rejects with TimeoutError (not retryable: the outcome is unknown), NoRespondersError where the
   * broker tells, RemoteError when the responder failed, AbortedError, ClosedError when the bus closes.
   */
  request<T, R>(topic: Topic<T, R> | string, payload: T, options: RequestOptions = {}): Promise<R> {
    try {
      if (this.#closing) throw new ClosedError('The bus is closed: request rejected');
      const def = toTopic(topic) as Topic<T, R>;
      const signal = checkRequestOptions(options);
      const { headers, id } = options;
      if (signal?.aborted) throw new AbortedError('Request aborted before sending', { cause: signal.reason });
      const extra = headers === undefined && id === undefined ? undefined : { headers, id };
      const pending = this.#record(def, payload, extra);
      if (pending instanceof Promise) return pending.then((record) => this.#requests.request(def, record, options));
      return this.#requests.request(def, pending, options);
    } catch (error) {
      return Promise.reject(error);
    }
  }

  /**
   * Answers requests on `topic`: the handler's return value is the reply (validated by the topic's `response`
   * schema); a throw is a RemoteError for the caller (code and a bounded message, no stack). Responders in one
   * `group` share the requests. Requests are not retried or dead-lettered: the caller is waiting and decides.
   * With `idempotency` (and a group) the handler runs at most once per request id: a repeat of an answered (or
   * running) request gets a RemoteError with remoteCode 'BUSBAR_DUPLICATE' instead of a second run.
   */
  async respond<T, R>(
    topic: Topic<T, R> | string,
    handler: Responder<T, R>,
    options: RespondOptions = {},
  ): Promise<Subscription> {
    if (this.#closing) throw new ClosedError('The bus is closed: respond rejected');
    if (typeof handler !== 'function') throw new ConfigError('respond needs a handler function');
    const def = toTopic(topic) as Topic<T, R>;
    const resolved = parseOptions(respondOptionsSchema, options, 'respond options');
    // As for subscribe: on a broker without wildcards a pattern responder would be served nothing, silently.
    assertPatternSupported(def.name, this.#transport, this.#init.system, 'responders');
    this.#out.checkTopic(def.name, 'subscribe');
    if (resolved.group !== undefined) assertGroupName(resolved.group);
    const native = await this.#requests.respond(def, handler, resolved).catch((error: unknown) => {
      throw this.#clean(error);
    });
    const handle = responderHandle(def.name, resolved.group, native, (h: Subscription) => this.#responders.delete(h));
    this.#responders.add(handle);
    return handle;
  }

  /**
   * The messages of `topic` as an async iterator: `for await (const message of bus.consume(topic, { group }))`.
   * Each is acked when the loop body finishes, with the same retry, dead-letter and idempotency rules as a
   * handler (a body that throws leaves the loop: the message is released, not retried); leaving the loop
   * releases what was not handled and closes the subscription. Concurrency is 1 unless set. The subscription
   * starts at the first `next()`, so a group that does not exist yet starts there, not at this call.
   */
  consume<T>(topic: TopicLike<T>, options: SubscribeOptions = {}): AsyncIterableIterator<Message<T>> {
    return new MessageStream<T>((handler) => this.subscribe(topic, handler, options));
  }

  /**
   * Reads the dead letters of `topic` for `group` (as a subscription of the
   * dead-letter reader group). `message.deadLetter` has the failure metadata;
   * the payload is decoded with the topic's codec, or left as bytes if that fails.
   */
  async subscribeDeadLetters<T>(
    topic: TopicLike<T>,
    group: string | undefined,
    handler: Handler<T | Uint8Array>,
    options: Omit<SubscribeOptions, 'group' | 'deadLetter'> = {},
  ): Promise<Subscription> {
    return this.#subscriptions.deadLetters(topic, group, handler, options);
  }

  /**
   * Moves dead letters of `topic`/`group` back to their original topic (same id, key, body and user headers;
   * failure metadata removed; a `busbar-redrive` counter added). Each is re-published with confirmation before
   * its dead letter is acked. Only dead letters written before the call are moved, so a message that fails again
   * is not re-driven in a loop. Resolves with how many were re-driven once `limit` is reached or none arrived
   * for `idleMs`.
   */
  async redrive(topic: TopicLike<unknown>, group: string | undefined, options: RedriveOptions = {}): Promise<number> {
    const { parts, name } = await this.#deadLetterWalk(topic, group);
    return redrive(parts, name, options);
  }

  /**
   * The dead letters of `topic`/`group` as they are (payload decoded where it can be, `deadLetter` metadata),
   * without taking any off the dead-letter queue: for a look before a re-drive or a purge.
   */
  async peekDeadLetters(
    topic: TopicLike<unknown>,
    group: string | undefined,
    options: DeadLetterWalkOptions = {},
  ): Promise<Message<unknown>[]> {
    const { parts } = await this.#deadLetterWalk(topic, group);
    return peekDeadLetters(parts, options);
  }

  /** Deletes the dead letters of `topic`/`group` that `filter` selects (all by default); returns how many. */
  async purgeDeadLetters(
    topic: TopicLike<unknown>,
    group: string | undefined,
    options: DeadLetterWalkOptions = {},
  ): Promise<number> {
    const { parts } = await this.#deadLetterWalk(topic, group);
    return purgeDeadLetters(parts, options);
  }

  #deadLetterWalk(topic: TopicLike<unknown>, group: string | undefined): ReturnType<Subscriptions['walk']> {
    if (this.#closing) throw new ClosedError('The bus is closed');
    return this.#subscriptions.walk(topic, group);
  }

  /**
   * Consumer lag of every group subscription of this bus, where the transport
   * can measure it (empty otherwise).
   */
  async lag(): Promise<GroupLag[]> {
    return lagOf(this.#transport, this.#subscriptions.stats());
  }

  /** The state of every connection and subscription. */
  health(): Health {
    const { system, connections } = this.#init;
    return healthOf(system, connections.list(), this.#subscriptions.stats(), this.#closing !== undefined);
  }

  /**
   * Closes every subscription (gracefully), flushes publishes, disconnects. Idempotent. Bounded by
   * `closeTimeoutMs`; `signal` cuts the wait for in-flight handlers short (they are released, never acked).
   */
  close(options: { signal?: AbortSignal } = {}): Promise<void> {
    // Checked only on the first call: a second close() returns the first one's promise whatever it is given.
    if (this.#closing === undefined) {
      try {
        signalOf(options, 'close options');
      } catch (error) {
        return Promise.reject(error);
      }
    }
    this.#closing ??= (async () => {
      this.#init.connections.quiet = true;
      const deadline = Date.now() + this.#init.closeTimeoutMs;
      this.#requests.close();
      this.#middleware.close();
      await Promise.all([
        this.#subscriptions.close(deadline, options.signal),
        ...[...this.#responders].map((r) =>
          r
            .close()
            .catch((e: unknown) => this.#init.logger.warn('Closing a responder failed', { error: toFailure(e) })),
        ),
      ]);
      this.#responders.clear();
      try {
        await disconnect(this.#transport, deadline, this.#init.logger);
      } catch (error) {
        throw this.#clean(error);
      } finally {
        this.#init.connections.end();
      }
    })();
    return this.#closing;
  }

  #clean(error: unknown): Error {
    if (BusbarError.is(error)) return error;
    return sanitizeError(error, this.#init.secrets);
  }

  [inspect.custom](): string {
    return `Bus { transport: '${this.#init.system}', url: '${this.#init.redactedUrl}' }`;
  }

  /** `await using bus = await connect(...)`: closed when the scope ends. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }

  toJSON(): Record<string, unknown> {
    return { transport: this.#init.system, url: this.#init.redactedUrl };
  }
}
