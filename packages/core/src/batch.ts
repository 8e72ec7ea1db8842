import { ConfigError, HandlerTimeoutError } from './errors.js';
import type { Handler, HandlerContext, Message } from './message.js';
import type { ResolvedBatchOptions } from './options.js';
import { Context, type InFlight } from './subscription/state.js';
import { Deque } from './transport/deque.js';

/** What a batch handler gets besides the messages. */
export interface BatchContext<T> {
  /**
   * Aborted when the batch call reaches the handler timeout, or when the subscription's close stops waiting for
   * it (read it only if you use it).
   */
  readonly signal: AbortSignal;
  /**
   * Fails one message of the batch (the others are acked when the handler returns): it is retried with backoff
   * and then dead-lettered, with the same metadata as a single handler's throw. `error` may be anything.
   * `message` must be one of this batch's (else a ConfigError is thrown); calls after the handler settled are
   * ignored.
   */
  fail(message: Message<T>, error: unknown): void;
}

/**
 * Handles an array of messages in arrival order. Resolving acks every message not passed to `context.fail`;
 * a throw fails every message of the batch.
 */
export type BatchHandler<T> = (messages: readonly Message<T>[], context: BatchContext<T>) => unknown;

interface Waiting<T> {
  readonly message: Message<T>;
  readonly context: HandlerContext;
  readonly resolve: () => void;
  readonly reject: (error: unknown) => void;
}

/**
 * Turns a batch handler into the per-message handler of an ordinary subscription, so every message keeps the
 * whole pipeline (decode, validation, idempotency, retry, dead letter, settle, drain). The subscription runs
 * `maxSize` messages at once, so one batch runs at a time.
 *
 * Order: every message takes a slot when the subscription starts it (`started`, in arrival order) and a
 * batch is the run of ready slots from the front. A message still in an asynchronous stage (an async schema,
 * an idempotency claim) holds back the ones behind it, so messages of a key reach the handler in order; one
 * that never reaches the handler (invalid, a duplicate, filtered by middleware) gives its slot up (`finished`).
 */
export class Batcher<T> {
  readonly #handler: BatchHandler<T>;
  readonly #maxSize: number;
  readonly #maxWaitMs: number;
  readonly #timeoutMs: number;
  /** Started messages in arrival order (each one's `batched` is set once it reaches the handler). */
  readonly #order = new Deque<InFlight>();
  #ready = 0;
  #timer: NodeJS.Timeout | undefined;
  #running = false;
  /** The wait is over (or the subscription closes): hand over what is ready as soon as nothing runs. */
  #due = false;
  #closing = false;

  /** `timeoutMs`: the subscription's handler timeout, which bounds one batch call. */
  constructor(handler: BatchHandler<T>, options: ResolvedBatchOptions, timeoutMs: number) {
    this.#handler = handler;
    this.#timeoutMs = timeoutMs;
    this.#maxSize = options.maxSize;
    this.#maxWaitMs = options.maxWaitMs;
  }

  /** The subscription started `rec` (arrival order). */
  readonly started = (rec: InFlight): void => {
    this.#order.push(rec);
  };

  /** `rec` is settled: its slot goes (it may never have reached the handler); the front may be free now. */
  readonly finished = (rec: InFlight): void => {
    rec.finished = true;
    if (rec.batched !== undefined) {
      // Settled while it waited here (its timeout): not handed over.
      rec.batched = undefined;
      this.#ready--;
    }
    this.#check();
  };

  readonly handle: Handler<T> = (message, context) =>
    new Promise<void>((resolve, reject) => {
      const rec = Context.record(context);
      const waiting: Waiting<T> = { message, context, resolve, reject };
      // Not started through this subscription (cannot happen): handled alone rather than lost.
      if (rec === undefined || rec.finished) {
        void this.#run([waiting]);
        return;
      }
      rec.batched = waiting;
      this.#ready++;
      if (!this.#closing) this.#timer ??= setTimeout(() => this.flush(), this.#maxWaitMs);
      this.#check();
    });

  /** The subscription closes: hand over what is ready now, and whatever becomes ready from here on at once. */
  readonly close = (): void => {
    this.#closing = true;
    this.flush();
  };

  /** Hands the ready messages over now (or as soon as the running batch is done). */
  flush(): void {
    clearTimeout(this.#timer);
    this.#timer = undefined;
    this.#due = true;
    this.#check();
  }

  #check(): void {
    if (this.#running || this.#ready === 0) return;
    if (!this.#due && !this.#closing && this.#ready < this.#maxSize) return;
    const batch: Waiting<T>[] = [];
    while (batch.length < this.#maxSize) {
      const rec = this.#order.at(0);
      if (rec === undefined) break;
      // Settled without reaching the handler (invalid, a duplicate, filtered by middleware): its slot goes.
      if (rec.finished) {
        this.#order.shift();
        continue;
      }
      const waiting = rec.batched as Waiting<T> | undefined;
      // The front is not ready yet: the rest waits for it (it is bounded by the subscription's own timeout).
      if (waiting === undefined) break;
      this.#order.shift();
      rec.batched = undefined;
      this.#ready--;
      // Given back at close while it waited here: its pipeline ignores the outcome; nothing to hand over.
      if (rec.abandoned) waiting.resolve();
      else batch.push(waiting);
    }
    if (batch.length === 0) return;
    clearTimeout(this.#timer);
    this.#timer = undefined;
    this.#due = false;
    this.#running = true;
    void this.#run(batch).then(() => {
      this.#running = false;
      if (this.#ready > 0 && !this.#closing) this.#timer ??= setTimeout(() => this.flush(), this.#maxWaitMs);
      this.#check();
    });
  }

  async #run(batch: Waiting<T>[]): Promise<void> {
    const context = new BatchCalls<T>(batch);
    let timer: NodeJS.Timeout | undefined;
    try {
      const call = Promise.resolve().then(() =>
        this.#handler(
          batch.map((w) => w.message),
          context,
        ),
      );
      // Bounded: a handler that never settles would otherwise hold back every later batch for good. Unref'd:
      // a handler that hangs past close() must not keep the process alive until its timeout.
      await new Promise<unknown>((resolve, reject) => {
        timer = setTimeout(() => {
          const error = new HandlerTimeoutError(this.#timeoutMs);
          context.abort(error);
          reject(error);
        }, this.#timeoutMs);
        timer.unref();
        call.then(resolve, reject);
      });
    } catch (error) {
      context.done = true;
      for (const w of batch) w.reject(error);
      return;
    } finally {
      clearTimeout(timer);
    }
    context.done = true;
    for (const w of batch) {
      if (context.failed.has(w.message)) w.reject(context.failed.get(w.message));
      else w.resolve();
    }
  }
}

class BatchCalls<T> implements BatchContext<T> {
  readonly #batch: readonly Waiting<T>[];
  readonly failed = new Map<Message<T>, unknown>();
  done = false;
  #controller: AbortController | undefined;
  #signal: AbortSignal | undefined;

  constructor(batch: readonly Waiting<T>[]) {
    this.#batch = batch;
  }

  // Made on first use: the messages' own signals (each one an AbortController) are not created otherwise. They
  // are aborted when close() gives up on the batch; the batch's own when its call times out.
  get signal(): AbortSignal {
    this.#controller ??= new AbortController();
    this.#signal ??= AbortSignal.any([this.#controller.signal, ...this.#batch.map((w) => w.context.signal)]);
    return this.#signal;
  }

  abort(error: Error): void {
    this.#controller ??= new AbortController();
    this.#controller.abort(error);
  }

  fail(message: Message<T>, error: unknown): void {
    if (this.done) return;
    if (!this.#batch.some((w) => w.message === message)) {
      throw new ConfigError('context.fail() needs a message of this batch (the object the handler was given)');
    }
    this.failed.set(message, error);
  }
}
