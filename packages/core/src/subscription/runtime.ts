import { HandlerTimeoutError } from '../errors.js';
import type { Handler } from '../message.js';
import { isPattern } from '../names.js';
import type { ResolvedSubscribeOptions } from '../options.js';
import type { Topic } from '../topic.js';
import { HEADER } from '../transport/headers.js';
import type { Delivery, TransportSubscription } from '../transport/spi.js';
import { drain } from './drain.js';
import { Failures } from './failure.js';
import { Pipeline } from './pipeline.js';
import { KeyedQueue } from './queue.js';
import { Settlement } from './settle.js';
import { type InFlight, inFlight, type Subscription, type SubscriptionHost, type SubscriptionStats } from './state.js';

/** The pause before a message is given back after an unexpected failure settling it. */
const UNEXPECTED_RELEASE_MS = 1_000;

/** How a subscription other than a plain handler's runs (a batch subscription). */
export interface RuntimeShape {
  /** Hold a message while another of its key runs. Default: when concurrency > 1. */
  readonly keyed?: boolean;
  /** Called once when close begins, before in-flight handlers are awaited. */
  readonly closing?: () => void;
  /**
   * Never dead-letter or drop a message: a failure of any kind (`PermanentError`, attempts used up) is retried
   * after the retry backoff, for good (dead-letter readers: a dead letter has nowhere further to go).
   */
  readonly keepFailed?: boolean;
  /** A body that cannot be decoded reaches the handler as its bytes instead of failing (dead letters read back). */
  readonly bytesWhenUndecodable?: boolean;
  /** Called for each message as it starts, in arrival order, and once it is settled. */
  readonly started?: (rec: InFlight) => void;
  readonly finished?: (rec: InFlight) => void;
}

/**
 * The consumer runtime shared by every transport. It only wires the jobs together: deliveries wait in a
 * {@link KeyedQueue}, at most `concurrency` of them go through the {@link Pipeline} at once, failures go to
 * {@link Failures}, broker-side settling to {@link Settlement}, and close() to {@link drain}.
 */
export class SubscriptionRuntime<T> implements Subscription {
  readonly topic: string;
  readonly group: string | undefined;
  readonly #options: ResolvedSubscribeOptions;
  readonly #host: SubscriptionHost;
  readonly #queue: KeyedQueue;
  readonly #inFlight = new Set<InFlight>();
  /** Deliveries waiting out the pause after an unexpected failure (see #unexpected); close releases them at once. */
  readonly #parked = new Map<ReturnType<typeof setTimeout>, Delivery>();
  readonly #settle: Settlement;
  readonly #failures: Failures;
  readonly #pipeline: Pipeline<T>;
  /** A wildcard group would otherwise swallow the dead letters published under its own pattern. */
  readonly #skipDeadLetters: boolean;
  #native: TransportSubscription | undefined;
  #state: 'running' | 'closing' | 'closed' = 'running';
  #closing: Promise<void> | undefined;
  #sweeper: NodeJS.Timeout | undefined;
  #idle: (() => void) | undefined;
  #pumping = false;
  readonly #closingHook: (() => void) | undefined;
  readonly #started: ((rec: InFlight) => void) | undefined;
  readonly #finished: ((rec: InFlight) => void) | undefined;

  constructor(
    topic: Topic<T>,
    pattern: string,
    handler: Handler<T>,
    options: ResolvedSubscribeOptions,
    host: SubscriptionHost,
    shape: RuntimeShape = {},
  ) {
    this.topic = pattern;
    this.#closingHook = shape.closing;
    this.#started = shape.started;
    this.#finished = shape.finished;
    this.group = options.group;
    this.#options = options;
    this.#host = host;
    this.#queue = new KeyedQueue(shape.keyed ?? options.concurrency > 1);
    this.#skipDeadLetters = isPattern(pattern) && !pattern.endsWith('.dlq');
    this.#settle = new Settlement(host, pattern, options.group);
    this.#failures = new Failures({
      host,
      options,
      group: options.group,
      contentType: topic.codec.contentType,
      settle: this.#settle,
      redeliver: this.onDelivery,
      keepFailed: shape.keepFailed === true,
    });
    this.#pipeline = new Pipeline({
      def: topic,
      handler,
      options,
      host,
      group: options.group,
      settle: this.#settle,
      failures: this.#failures,
      running: () => this.#state === 'running',
      bytesWhenUndecodable: shape.bytesWhenUndecodable === true,
    });
  }

  /** Attaches the native subscription; from here on deliveries flow. */
  attach(native: TransportSubscription): void {
    this.#native = native;
    const every = Math.max(10, Math.min(1_000, Math.floor(this.#options.handlerTimeoutMs / 4)));
    this.#sweeper = setInterval(() => this.#sweep(), every);
    this.#sweeper.unref();
  }

  get closed(): boolean {
    return this.#state === 'closed';
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }

  stats(): SubscriptionStats {
    return {
      topic: this.topic,
      group: this.group,
      state: this.#state,
      inFlight: this.#inFlight.size,
      queued: this.#queue.length,
    };
  }

  /** The transport's `onDelivery`. */
  readonly onDelivery = (delivery: Delivery): void => {
    const headers = delivery.headers;
    if (this.#state !== 'running') this.#settle.release(delivery);
    else if (
      this.#skipDeadLetters &&
      headers[HEADER.dlTopic] !== undefined &&
      headers[HEADER.dlPending] === undefined
    ) {
      this.#settle.drop(delivery);
    } else {
      this.#queue.push(delivery);
      this.#pump();
    }
  };

  readonly onError = (error: Error): void => {
    this.#host.logger.error(`Subscription to '${this.topic}' failed`, { group: this.group, error });
  };

  #pump(): void {
    // A message settled synchronously inside this loop calls back in here: the running loop picks up its slot.
    if (this.#pumping) return;
    this.#pumping = true;
    try {
      const limit = this.#options.concurrency;
      // A handler that closes the subscription synchronously stops the loop (close releases the rest).
      while (this.#state === 'running' && this.#inFlight.size < limit) {
        const delivery = this.#queue.take();
        if (delivery === undefined) return;
        this.#start(delivery);
      }
    } finally {
      this.#pumping = false;
    }
  }

  #start(delivery: Delivery): void {
    const rec = inFlight(delivery);
    this.#inFlight.add(rec);
    this.#started?.(rec);
    let pending: Promise<void> | undefined;
    try {
      pending = this.#pipeline.process(rec);
    } catch (error) {
      this.#unexpected(rec, error);
    }
    if (pending === undefined) this.#finish(rec);
    else {
      // One `then`, not catch + finally: those cost four more promises and closures per message.
      pending.then(
        () => this.#finish(rec),
        (error: unknown) => {
          this.#unexpected(rec, error);
          this.#finish(rec);
        },
      );
    }
  }

  /**
   * A bug below the handler (in core or a driver) threw on the way to settling a message. The message is
   * released after a pause instead of being held unsettled for good (a stuck prefetch slot, a Kafka partition
   * whose commits stop there); the pause keeps a failure that repeats from becoming a hot loop. A delivery
   * that was settled before the throw ignores the release (settle-once).
   */
  #unexpected(rec: InFlight, error: unknown): void {
    const running = this.#state === 'running';
    this.#host.logger.error(
      running
        ? `Unexpected failure settling a message; it is released for redelivery in ${UNEXPECTED_RELEASE_MS} ms`
        : 'Unexpected failure settling a message; it is released',
      { group: this.group, error },
    );
    if (!running) {
      this.#settle.release(rec.delivery);
      return;
    }
    const timer = setTimeout(() => {
      this.#parked.delete(timer);
      this.#settle.release(rec.delivery);
    }, UNEXPECTED_RELEASE_MS);
    timer.unref();
    this.#parked.set(timer, rec.delivery);
  }

  #finish(rec: InFlight): void {
    this.#inFlight.delete(rec);
    this.#finished?.(rec);
    this.#queue.done(rec.delivery);
    if (this.#state === 'running') this.#pump();
    else if (this.#inFlight.size === 0) this.#idle?.();
  }

  /** Fails handlers past the handler timeout: one timer per subscription, none per message. */
  #sweep(): void {
    const deadline = Date.now() - this.#options.handlerTimeoutMs;
    for (const rec of this.#inFlight) {
      if (rec.startedAt <= deadline && rec.fail) {
        const error = new HandlerTimeoutError(this.#options.handlerTimeoutMs);
        rec.controller?.abort(error);
        rec.fail(error);
        rec.fail = undefined;
      }
    }
  }

  /**
   * `deadline` (ms since the epoch) bounds the whole close, broker up or down: handlers get until then,
   * and the transport's stop/close calls are abandoned (logged) when they would run past it.
   */
  close(deadline = Date.now() + this.#host.closeTimeoutMs, signal?: AbortSignal): Promise<void> {
    this.#closing ??= this.#close(deadline, signal);
    return this.#closing;
  }

  async #close(deadline: number, signal: AbortSignal | undefined): Promise<void> {
    this.#state = 'closing';
    this.#closingHook?.();
    for (const [timer, delivery] of this.#parked) {
      clearTimeout(timer);
      this.#settle.release(delivery);
    }
    this.#parked.clear();
    await drain(
      {
        native: this.#native,
        queue: this.#queue,
        inFlight: this.#inFlight,
        failures: this.#failures,
        settle: this.#settle,
        idle: () =>
          new Promise<void>((resolve) => {
            if (this.#inFlight.size === 0) resolve();
            else this.#idle = resolve;
          }),
      },
      deadline,
      signal,
    );
    if (this.#sweeper) clearInterval(this.#sweeper);
    this.#state = 'closed';
  }
}
