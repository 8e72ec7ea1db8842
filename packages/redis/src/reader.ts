import type { Delivery, RetryRequest } from '@busbar/core/transport';
import { type DecodedEntry, ENTRY_HEADER, type RedisEntry } from './codec.js';

/** What a delivery needs from the subscription that produced it. */
export interface DeliveryOwner {
  ack(d: RedisDelivery): Promise<void>;
  retry(d: RedisDelivery, request: RetryRequest): Promise<void>;
  release(d: RedisDelivery): Promise<void>;
}

/** One stream entry handed to core; settled exactly once through its owner. */
export class RedisDelivery implements Delivery {
  readonly id: string;
  readonly topic: string;
  readonly key: string | undefined;
  readonly headers: Readonly<Record<string, string>>;
  readonly body: Uint8Array;
  readonly timestamp: number;
  readonly contentType: string | undefined;
  /** Never: an entry without a usable `id` field is identified by its entry id (stable across redeliveries). */
  readonly idGenerated = false;
  readonly attempt: number;
  readonly raw: RedisEntry;
  /** True when read from the group's retry stream. */
  readonly fromRetry: boolean;
  /** When the entry's idle time was last reset (delivery or refresh), for keeping held entries unclaimable. */
  heldSince: number;
  settled = false;
  readonly #owner: DeliveryOwner;

  constructor(
    owner: DeliveryOwner,
    topic: string,
    raw: RedisEntry,
    entry: DecodedEntry,
    fromRetry: boolean,
    now: number,
  ) {
    this.#owner = owner;
    this.id = entry.id;
    this.topic = topic;
    this.key = entry.key;
    this.headers = entry.headers;
    this.body = entry.body;
    this.timestamp = entry.timestamp;
    this.contentType = entry.contentType;
    this.attempt = entry.baseAttempt + Math.max(0, raw.deliveryCount - 1);
    this.raw = raw;
    this.fromRetry = fromRetry;
    this.heldSince = now;
  }

  /** The entry id it was first read from (a retry's headers already hold it). */
  deadLetterHeaders(): Readonly<Record<string, string>> | undefined {
    return this.fromRetry ? undefined : { [ENTRY_HEADER]: this.raw.entryId };
  }

  ack(): Promise<void> {
    return this.#owner.ack(this);
  }

  retry(request: RetryRequest): Promise<void> {
    return this.#owner.retry(this, request);
  }

  release(): Promise<void> {
    return this.#owner.release(this);
  }
}

/** An XREAD/XREADGROUP/XRANGE-style reply read as Buffers: [[key, [[id, fields | null], ...]], ...]. */
export type StreamReply = [Buffer, [Buffer, Buffer[] | null][]][] | null;

/** A reply's entries with their stream key (a plain array: a generator cost more per entry). */
export function entriesOf(reply: StreamReply): [string, string, Buffer[] | null][] {
  const rows: [string, string, Buffer[] | null][] = [];
  if (!reply) return rows;
  for (const [key, entries] of reply) {
    const stream = key.toString();
    for (const [id, fields] of entries) rows.push([stream, id.toString('latin1'), fields]);
  }
  return rows;
}

/**
 * Unsettled deliveries by stream and entry id. Two maps keyed by the entry id itself: a
 * `${stream} ${id}` key cost a string concatenation and a fresh hash per lookup (measured
 * on the consume path).
 */
export class Held {
  readonly #main = new Map<string, RedisDelivery>();
  readonly #retry = new Map<string, RedisDelivery>();
  readonly #retryStream: string;
  constructor(retryStream: string) {
    this.#retryStream = retryStream;
  }
  #of(stream: string): Map<string, RedisDelivery> {
    return stream === this.#retryStream ? this.#retry : this.#main;
  }
  get size(): number {
    return this.#main.size + this.#retry.size;
  }
  has(stream: string, entryId: string): boolean {
    return this.#of(stream).has(entryId);
  }
  add(d: RedisDelivery): void {
    (d.fromRetry ? this.#retry : this.#main).set(d.raw.entryId, d);
  }
  delete(d: RedisDelivery): void {
    (d.fromRetry ? this.#retry : this.#main).delete(d.raw.entryId);
  }
  *values(): IterableIterator<RedisDelivery> {
    yield* this.#main.values();
    yield* this.#retry.values();
  }
}

/** Waits for capacity without a timer: resolved by the next settle or by stop. */
export class Gate {
  #waiter: (() => void) | undefined;
  wait(): Promise<void> {
    return new Promise((resolve) => {
      this.#waiter = resolve;
    });
  }
  open(): void {
    const waiter = this.#waiter;
    this.#waiter = undefined;
    waiter?.();
  }
}

export const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/** True if `promise` settles within `ms` (its outcome is ignored). */
export async function settlesWithin(promise: Promise<unknown> | undefined, ms: number): Promise<boolean> {
  if (!promise) return true;
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<boolean>((resolve) => {
    // No deadline (Infinity) waits for the promise itself: setTimeout would read it as 1 ms.
    if (Number.isFinite(ms)) timer = setTimeout(() => resolve(false), Math.max(0, Math.min(ms, 2_147_483_647)));
  });
  const done = promise.then(
    () => true,
    () => true,
  );
  const result = await Promise.race([done, timeout]);
  clearTimeout(timer);
  return result;
}
