import { AbortedError, TimeoutError } from '../errors.js';

/**
 * Rejects when `promise` has not settled within `ms`: with a `TimeoutError` (retryable, outcome unknown) saying
 * `message`, or with what `message` returns when it is a function (called once, at the timeout).
 */
export function withTimeout<T>(promise: PromiseLike<T>, ms: number, message: string | (() => Error)): Promise<T> {
  if (!Number.isFinite(ms) || ms <= 0) return Promise.resolve(promise);
  return new Promise<T>((resolve, reject) => {
    const timer = setTimeout(() => reject(typeof message === 'string' ? new TimeoutError(message) : message()), ms);
    promise.then(
      (value) => {
        clearTimeout(timer);
        resolve(value);
      },
      (error: unknown) => {
        clearTimeout(timer);
        reject(error);
      },
    );
  });
}

/**
 * True for a record published more than a second before `now` (a dead letter, a re-drive, an outbox row):
 * it must carry its own publish time. A fresh record can leave its time to the broker (stream timestamp,
 * entry id, send time), which saves a header or field per message on brokers that have one.
 */
export function keepsOwnTimestamp(record: { readonly timestamp: number }, now: number): boolean {
  return now - record.timestamp > 1_000;
}

export interface Deferred<T> {
  readonly promise: Promise<T>;
  resolve(value: T): void;
  reject(error: unknown): void;
}

export function deferred<T = void>(): Deferred<T> {
  let resolve!: (value: T) => void;
  let reject!: (error: unknown) => void;
  const promise = new Promise<T>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return { promise, resolve, reject };
}

/**
 * Coalesces items submitted in the same turn of the event loop into one
 * `flush(items)` call (bounded by `maxBatch`), resolving each submitter when its
 * batch settles. This is how drivers turn many concurrent `publish()` calls into
 * few broker round trips without a timer per message.
 */
export class Coalescer<T> {
  #pending: { item: T; done: Deferred<void> }[] = [];
  #scheduled = false;
  readonly #flush: (items: T[]) => Promise<void>;
  readonly #maxBatch: number;

  constructor(flush: (items: T[]) => Promise<void>, maxBatch = 1000) {
    this.#flush = flush;
    this.#maxBatch = maxBatch;
  }

  submit(item: T): Promise<void> {
    const done = deferred();
    this.#pending.push({ item, done });
    if (this.#pending.length >= this.#maxBatch) this.#drain();
    else if (!this.#scheduled) {
      this.#scheduled = true;
      setImmediate(() => this.#drain());
    }
    return done.promise;
  }

  /** Submit many; one promise for all of them. */
  submitAll(items: readonly T[]): Promise<void> {
    return Promise.all(items.map((item) => this.submit(item))).then(() => undefined);
  }

  #drain(): void {
    this.#scheduled = false;
    while (this.#pending.length > 0) {
      const batch = this.#pending.splice(0, this.#maxBatch);
      this.#flush(batch.map((p) => p.item)).then(
        () => {
          for (const p of batch) p.done.resolve();
        },
        (error: unknown) => {
          for (const p of batch) p.done.reject(error);
        },
      );
    }
  }
}

/**
 * `promise`, or an AbortedError as soon as `signal` fires (the work itself goes on: the caller stops waiting).
 * No listener is left on the signal once either side settles.
 */
export function abortable<T>(promise: Promise<T>, signal: AbortSignal | undefined, message: string): Promise<T> {
  if (signal === undefined) return promise;
  if (signal.aborted) return Promise.reject(new AbortedError(message, { cause: signal.reason }));
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(new AbortedError(message, { cause: signal.reason }));
    signal.addEventListener('abort', onAbort, { once: true });
    promise.then(
      (value) => {
        signal.removeEventListener('abort', onAbort);
        resolve(value);
      },
      (error: unknown) => {
        signal.removeEventListener('abort', onAbort);
        reject(error);
      },
    );
  });
}
