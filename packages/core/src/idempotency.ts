/**
 * Idempotent consumers: a key (`group:messageId`) is claimed before the
 * handler runs and recorded as done only after it succeeded, so a duplicate
 * (redelivery, re-sent outbox row, publish retried after a timeout) is acked
 * without running the handler again, and two copies never run at once.
 */

/** `claimed`: run the handler. `done`: already processed, ack. `busy`: another consumer holds the claim now. */
export type ClaimResult = 'claimed' | 'done' | 'busy';

export interface IdempotencyStore {
  /** Atomically claim `key` for `leaseMs` unless it is done or claimed by someone else. */
  claim(key: string, leaseMs: number): Promise<ClaimResult>;
  /** Mark `key` done for `ttlMs`. */
  complete(key: string, ttlMs: number): Promise<void>;
  /** Drop a claim after a failed attempt so the retry can claim it. */
  release(key: string): Promise<void>;
}

const RESULTS: ReadonlySet<unknown> = new Set<ClaimResult>(['claimed', 'done', 'busy']);

/**
 * The user's store as core calls it: every call returns a promise, whatever the store does. A store written
 * in JavaScript may throw synchronously or return a bare value, and core chains `.catch` on these calls in its
 * settle path, where a synchronous throw would leave the message unsettled. A claim answer that is none of the
 * three results is a failure too (the message is retried with backoff), not a licence to run the handler.
 */
export function guardStore(store: IdempotencyStore): IdempotencyStore {
  return {
    async claim(key, leaseMs) {
      const result: unknown = await store.claim(key, leaseMs);
      if (RESULTS.has(result)) return result as ClaimResult;
      throw new TypeError(`The idempotency store's claim() answered ${typeof result}, not 'claimed', 'done' or 'busy'`);
    },
    async complete(key, ttlMs) {
      await store.complete(key, ttlMs);
    },
    async release(key) {
      await store.release(key);
    },
  };
}

interface Entry {
  done: boolean;
  expiresAt: number;
}

/** An in-process store: for tests, the memory transport and single-instance services. */
export class MemoryIdempotencyStore implements IdempotencyStore {
  readonly #entries = new Map<string, Entry>();
  #ops = 0;

  async claim(key: string, leaseMs: number): Promise<ClaimResult> {
    const now = Date.now();
    this.#sweep(now);
    const entry = this.#entries.get(key);
    if (entry && entry.expiresAt > now) return entry.done ? 'done' : 'busy';
    this.#entries.set(key, { done: false, expiresAt: now + leaseMs });
    return 'claimed';
  }

  async complete(key: string, ttlMs: number): Promise<void> {
    this.#entries.set(key, { done: true, expiresAt: Date.now() + ttlMs });
  }

  async release(key: string): Promise<void> {
    const entry = this.#entries.get(key);
    if (entry && !entry.done) this.#entries.delete(key);
  }

  get size(): number {
    return this.#entries.size;
  }

  /** Expired entries are dropped every 1000 operations, so memory follows the TTL without a timer. */
  #sweep(now: number): void {
    if (++this.#ops % 1000 !== 0) return;
    for (const [key, entry] of this.#entries) if (entry.expiresAt <= now) this.#entries.delete(key);
  }
}
