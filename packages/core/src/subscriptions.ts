import type { z } from 'zod';
import { Batcher, type BatchHandler } from './batch.js';
import { deadLetterTopic } from './dead-letter.js';
import { AbortedError, UnsupportedError } from './errors.js';
import type { Logger } from './logger.js';
import type { Handler } from './message.js';
import { type ConsumeMiddleware, composeConsume } from './middleware.js';
import { assertGroupName, assertTopicName, isPattern } from './names.js';
import {
  MAX_TIMER_MS,
  parseOptions,
  type ResolvedSubscribeOptions,
  type SubscribeOptions,
  type subscribeBatchOptionsSchema,
  subscribeOptionsSchema,
} from './options.js';
import { deadLetterReaderTopic, type RedriveParts, WALK_PREFETCH } from './redrive.js';
import { checkSignal } from './signal.js';
import { SubscriptionHandle } from './subscription/handle.js';
import { type Subscription, SubscriptionRuntime, type SubscriptionStats } from './subscription/index.js';
import type { RuntimeShape } from './subscription/runtime.js';
import { type Topic, type TopicLike, toTopic } from './topic.js';
import { DEAD_LETTER_READER_GROUP } from './transport/headers.js';
import type { OutgoingRecord, Transport } from './transport/spi.js';

/**
 * `subscribe`/`subscribeBatch` options as given: the `signal` apart (an AbortSignal or nothing, not yet aborted),
 * the rest parsed by `schema` into a typed ConfigError when invalid.
 */
export function subscribeArguments<S extends z.ZodType>(
  schema: S,
  options: unknown,
  what: string,
): { signal: AbortSignal | undefined; resolved: z.output<S> } {
  const isObject = typeof options === 'object' && options !== null;
  const { signal: given, ...rest } = (isObject ? options : {}) as { signal?: unknown };
  const signal = checkSignal(given, what);
  if (signal?.aborted) throw new AbortedError('Subscribe aborted before it started', { cause: signal.reason });
  return { signal, resolved: parseOptions(schema, isObject ? rest : options, what) };
}

/** A valid pattern on a broker without wildcards is unsupported, not an invalid name for that broker. */
export function assertPatternSupported(name: string, transport: Transport, system: string, what: string): void {
  if (!isPattern(name) || transport.capabilities.wildcards) return;
  assertTopicName(name, 'subscribe');
  throw new UnsupportedError(`The ${system} transport does not support wildcard ${what} ('${name}')`);
}

/** Closing on abort: the same graceful close as close() (in-flight handlers finish, bounded). */
export function closeOnAbort(subscription: Subscription, signal: AbortSignal | undefined): Subscription {
  signal?.addEventListener('abort', () => void subscription.close(), { once: true });
  return subscription;
}

/** How core's own dead-letter walks (re-drive, peek, purge) read: one at a time, never retried or dead-lettered. */
const WALK_OPTIONS = {
  group: DEAD_LETTER_READER_GROUP,
  deadLetter: false,
  retry: false,
  concurrency: 1,
  prefetch: WALK_PREFETCH,
};

type Open = Pick<SubscriptionRuntime<unknown>, 'stats' | 'close'>;

/** What the subscriptions of one bus need from it. */
export interface SubscriptionsHost {
  readonly transport: Transport;
  readonly system: string;
  readonly logger: Logger;
  readonly closeTimeoutMs: number;
  /** The bus's consume middleware, read when a subscription is made (later `use()` calls do not change it). */
  readonly middleware: () => readonly ConsumeMiddleware[];
  readonly checkTopic: (name: string, use: 'publish' | 'subscribe') => void;
  /** A native error as the bus shows it (secrets removed). */
  readonly clean: (error: unknown) => Error;
}

/**
 * The subscriptions of one bus: wires each handler to a {@link SubscriptionRuntime} and the transport, and owns
 * the dead-letter side (declaring dead-letter topics once, the readers and walks of re-drive, peek and purge).
 */
export class Subscriptions {
  readonly #host: SubscriptionsHost;
  readonly #open = new Set<Open>();
  readonly #declared = new Map<string, Promise<void>>();

  constructor(host: SubscriptionsHost) {
    this.#host = host;
  }

  stats(): SubscriptionStats[] {
    return [...this.#open].map((sub) => sub.stats());
  }

  /** Closes every subscription gracefully, bounded by `deadline`. */
  async close(deadline: number, signal: AbortSignal | undefined): Promise<void> {
    await Promise.all([...this.#open].map((s) => s.close(deadline, signal)));
    this.#open.clear();
  }

  /** `wrap`: apply the bus's and the subscription's middleware (not to core's own re-drive handler). */
  /** A batch subscription: the handler behind a Batcher, one batch in flight (concurrency is the batch size). */
  openBatch<T>(
    def: Topic<T>,
    handler: BatchHandler<T>,
    options: z.output<typeof subscribeBatchOptionsSchema>,
  ): Promise<Subscription> {
    const { batch, ...rest } = options;
    const batcher = new Batcher(handler, batch, rest.handlerTimeoutMs);
    const { started, finished, close } = batcher;
    const shape = { keyed: false, closing: close, started, finished };
    // The batcher bounds each batch call by handlerTimeoutMs. A message also waits here for its batch to form
    // (maxWaitMs) and for the batch before it: the subscription's own timeout (which fails a message) covers
    // all of that, so the wait does not count against the handler.
    const perMessageMs = Math.min(MAX_TIMER_MS, 2 * rest.handlerTimeoutMs + batch.maxWaitMs + 1_000);
    const resolved = { ...rest, concurrency: batch.maxSize, handlerTimeoutMs: perMessageMs };
    return this.open(def, batcher.handle, resolved, true, shape);
  }

  async open<T>(
    def: Topic<T>,
    handler: Handler<T>,
    options: ResolvedSubscribeOptions,
    wrap = true,
    shape: RuntimeShape = {},
  ): Promise<Subscription> {
    const { transport, system } = this.#host;
    assertPatternSupported(def.name, transport, system, 'subscriptions');
    this.#host.checkTopic(def.name, 'subscribe');
    if (options.group !== undefined) assertGroupName(options.group);
    const dlq =
      options.deadLetter === false
        ? undefined
        : typeof options.deadLetter === 'object'
          ? options.deadLetter.topic
          : deadLetterTopic(def.name, options.group);
    // A dead-letter topic the broker cannot have is an error now, not at the first failure hours later.
    if (dlq !== undefined) this.#host.checkTopic(dlq, 'publish');
    const chain = wrap ? [...this.#host.middleware(), ...(options.middleware ?? [])] : [];
    const runtime = new SubscriptionRuntime(
      def,
      def.name,
      composeConsume(chain, handler),
      options,
      {
        system,
        logger: this.#host.logger,
        closeTimeoutMs: this.#host.closeTimeoutMs,
        deadLetterTopic: dlq,
        maxRecordBytes: () => transport.maxPayloadBytes,
        publishDeadLetter: (record) => this.#publishDeadLetter(record),
      },
      shape,
    );
    let native: Awaited<ReturnType<Transport['subscribe']>>;
    try {
      native = await transport.subscribe(
        {
          topic: def.name,
          group: options.group,
          prefetch: options.prefetch ?? Math.max(100, options.concurrency * 2),
          handlerTimeoutMs: options.handlerTimeoutMs,
          deadLetterTopic: dlq,
        },
        { onDelivery: runtime.onDelivery, onError: runtime.onError },
      );
    } catch (error) {
      throw this.#host.clean(error);
    }
    runtime.attach(native);
    this.#open.add(runtime);
    return new SubscriptionHandle(runtime, () => this.#open.delete(runtime));
  }

  async #publishDeadLetter(record: OutgoingRecord): Promise<void> {
    let declared = this.#declared.get(record.topic);
    if (!declared) {
      this.#host.checkTopic(record.topic, 'publish');
      declared = this.#host.transport.declareGroup(record.topic, DEAD_LETTER_READER_GROUP);
      this.#declared.set(record.topic, declared);
      declared.catch(() => this.#declared.delete(record.topic));
    }
    await declared;
    await this.#host.transport.publish([record]);
  }

  /** A subscription of the dead-letter reader group to the dead letters of `topic`/`group`. */
  async deadLetters<T>(
    topic: TopicLike<T>,
    group: string | undefined,
    handler: Handler<T | Uint8Array>,
    options: Omit<SubscribeOptions, 'group' | 'deadLetter'>,
  ): Promise<Subscription> {
    const def = toTopic(topic);
    const name = deadLetterTopic(def.name, group);
    await this.#host.transport.declareGroup(name, DEAD_LETTER_READER_GROUP);
    const reader = deadLetterReaderTopic(def, name);
    const resolved = parseOptions(
      subscribeOptionsSchema,
      { retry: { maxDelayMs: 30_000 }, ...options, group: DEAD_LETTER_READER_GROUP, deadLetter: false },
      'subscribe options',
    );
    // A dead letter must never be dropped: a failing reader gets it again after the backoff, for good, whatever
    // it threw (the bus's middleware runs here too: a PermanentError of an auth check must not delete it).
    return this.open(reader, handler, resolved, true, { keepFailed: true, bytesWhenUndecodable: true });
  }

  /** What re-drive, peek and purge walk the dead letters of `topic`/`group` with. */
  async walk(topic: TopicLike<unknown>, group: string | undefined): Promise<{ parts: RedriveParts; name: string }> {
    const def = toTopic(topic);
    if (group !== undefined) assertGroupName(group);
    const name = deadLetterTopic(def.name, group);
    const transport = this.#host.transport;
    await transport.declareGroup(name, DEAD_LETTER_READER_GROUP);
    const reader = deadLetterReaderTopic(def, name);
    const resolved = parseOptions(subscribeOptionsSchema, WALK_OPTIONS, 'dead-letter options');
    const subscribe = (handler: Handler<unknown>) =>
      this.open(reader, handler, resolved, false, { bytesWhenUndecodable: true });
    return { name: def.name, parts: { transport, logger: this.#host.logger, subscribe } };
  }
}
