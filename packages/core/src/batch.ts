import { HandlerTimeoutError } from './errors.js';
import type { Handler, HandlerContext, Message } from './message.js';
import type { ResolvedBatchOptions } from './options.js';
import { withTimeout } from './transport/util.js';

/** What a batch handler gets besides the messages. */
export interface BatchContext<T> {
  /** Aborted when a message of the batch reaches the handler timeout (read it only if you use it). */
  readonly signal: AbortSignal;
  /**
   * Fails one message of the batch (the others are acked when the handler returns): it is retried with backoff
   * and then dead-lettered, with the same metadata as a single handler's throw. `error` may be anything.
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
 * `maxSize` messages at once; each waits here until its batch is handed over; one batch runs at a time, so
 * messages of one key are handled in order as with `concurrency: 1`.
 */
export class Batcher<T> {
  readonly #handler: BatchHandler<T>;
  readonly #maxSize: number;
  readonly #maxWaitMs: number;
  #collecting: Waiting<T>[] = [];
  #timer: NodeJS.Timeout | undefined;
  #running = false;
  #due = false;

  readonly #timeoutMs: number;

  /** `timeoutMs`: the subscription's handler timeout, which also bounds one batch call. */
  constructor(handler: BatchHandler<T>, options: ResolvedBatchOptions, timeoutMs: number) {
    this.#handler = handler;
    this.#timeoutMs = timeoutMs;
    this.#maxSize = options.maxSize;
    this.#maxWaitMs = options.maxWaitMs;
  }

  readonly handle: Handler<T> = (message, context) =>
    new Promise<void>((resolve, reject) => {
      this.#collecting.push({ message, context, resolve, reject });
      if (this.#collecting.length >= this.#maxSize) this.flush();
      else this.#timer ??= setTimeout(() => this.flush(), this.#maxWaitMs);
    });

  /** Hands the collected messages over now (or as soon as the running batch is done). */
  flush(): void {
    clearTimeout(this.#timer);
    this.#timer = undefined;
    if (this.#running) {
      this.#due = true;
      return;
    }
    const batch = this.#collecting.splice(0, this.#maxSize);
    if (batch.length === 0) return;
    this.#running = true;
    this.#due = false;
    void this.#run(batch).finally(() => {
      this.#running = false;
      if (this.#due || this.#collecting.length >= this.#maxSize) this.flush();
      else if (this.#collecting.length > 0) this.#timer ??= setTimeout(() => this.flush(), this.#maxWaitMs);
    });
  }

  async #run(batch: Waiting<T>[]): Promise<void> {
    const failed = new Map<Message<T>, unknown>();
    const context = new Context(batch, failed);
    try {
      // Bounded: a handler that never settles would otherwise hold back every later batch for good.
      const call = Promise.resolve().then(() =>
        this.#handler(
          batch.map((w) => w.message),
          context,
        ),
      );
      await withTimeout(call, this.#timeoutMs, () => new HandlerTimeoutError(this.#timeoutMs));
    } catch (error) {
      for (const w of batch) w.reject(error);
      return;
    }
    for (const w of batch) {
      if (failed.has(w.message)) w.reject(failed.get(w.message));
      else w.resolve();
    }
  }
}

class Context<T> implements BatchContext<T> {
  readonly #batch: readonly Waiting<T>[];
  readonly #failed: Map<Message<T>, unknown>;
  #signal: AbortSignal | undefined;

  constructor(batch: readonly Waiting<T>[], failed: Map<Message<T>, unknown>) {
    this.#batch = batch;
    this.#failed = failed;
  }

  // Made on first use: the messages' own signals (each one an AbortController) are not created otherwise.
  get signal(): AbortSignal {
    this.#signal ??= AbortSignal.any(this.#batch.map((w) => w.context.signal));
    return this.#signal;
  }

  fail(message: Message<T>, error: unknown): void {
    if (this.#batch.some((w) => w.message === message)) this.#failed.set(message, error);
  }
}
