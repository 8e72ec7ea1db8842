import { UnsupportedError } from '@busbar/core';
import { HEADER, RESERVED_HEADER_PREFIX, type RetryRequest, SettleOnce } from '@busbar/core/transport';
import { type DecodedEntry, decodeEntry, type RedisEntry } from './codec.js';

/**
 * The header busbar 0.1 wrote the source entry id in, before core's registry named it `sourceOffset`. Retries
 * scheduled by that version still carry it in their payload, so a delivery read back from the retry stream
 * accepts it (built from the prefix: the registry is the one place busbar header names are spelled out).
 */
export const LEGACY_ENTRY_HEADER = `${RESERVED_HEADER_PREFIX}redis-entry`;

/**
 * What a delivery needs from the consumer that read it: the native steps of settling, by the consumer's mode.
 * `SettleOnce` makes sure only one of them runs, once.
 */
export interface DeliveryOwner {
  /** The delivery is settled (ack or release begun, retry done): stop holding it. */
  settled(d: RedisDelivery): void;
  ack(d: RedisDelivery): Promise<void> | undefined;
  /** A group's only: core retries a broadcast subscription's messages in process. */
  retry?(d: RedisDelivery, request: RetryRequest): Promise<void>;
  release(d: RedisDelivery): Promise<void> | undefined;
}

/** One stream entry handed to core; settled exactly once (`SettleOnce`) through its owner. */
export class RedisDelivery extends SettleOnce<RedisEntry> {
  /** True when read from the group's retry stream. */
  readonly fromRetry: boolean;
  /** When the entry's idle time was last reset (delivery or refresh), for keeping held entries unclaimable. */
  heldSince: number;
  readonly #owner: DeliveryOwner;

  constructor(
    owner: DeliveryOwner,
    topic: string,
    raw: RedisEntry,
    entry: DecodedEntry,
    fromRetry: boolean,
    now: number,
  ) {
    // Never idGenerated: an entry without a usable `id` field is identified by its entry id (stable across
    // redeliveries).
    super(
      {
        id: entry.id,
        topic,
        key: entry.key,
        headers: entry.headers,
        body: entry.body,
        timestamp: entry.timestamp,
        contentType: entry.contentType,
        attempt: entry.baseAttempt + Math.max(0, raw.deliveryCount - 1),
      },
      raw,
    );
    this.#owner = owner;
    this.fromRetry = fromRetry;
    this.heldSince = now;
  }

  /** The entry id it was first read from (a retry's headers already hold it, perhaps under the old name). */
  deadLetterHeaders(): Readonly<Record<string, string>> | undefined {
    if (!this.fromRetry) return { [HEADER.sourceOffset]: this.raw.entryId };
    const legacy = this.headers[HEADER.sourceOffset] === undefined ? this.headers[LEGACY_ENTRY_HEADER] : undefined;
    return legacy === undefined ? undefined : { [HEADER.sourceOffset]: legacy };
  }

  protected override settled(): void {
    this.#owner.settled(this);
  }

  protected ackNative(): Promise<void> | undefined {
    return this.#owner.ack(this);
  }

  protected retryNative(request: RetryRequest): Promise<void> {
    if (this.#owner.retry === undefined) {
      return Promise.reject(new UnsupportedError('A broadcast subscription has no group to retry through'));
    }
    return this.#owner.retry(this, request);
  }

  protected releaseNative(): Promise<void> | undefined {
    return this.#owner.release(this);
  }
}

/**
 * An entry's fields as what core gets, the same in both read modes. `decodeEntry` takes any fields a
 * producer can write; should it still fail (a reply shape this code never saw), the entry is not skipped
 * (a broadcast reader would lose it silently, a group would read it again forever): it goes to core as an
 * empty body that claims to be JSON, which core's codec refuses, so it is dead-lettered (group) or dropped
 * with a log line (broadcast) like any message that cannot be decoded.
 */
export function decodeOrUndecodable(entryId: string, fields: Buffer[]): DecodedEntry {
  try {
    return decodeEntry(entryId, fields);
  } catch {
    return {
      id: entryId,
      key: undefined,
      headers: {},
      body: new Uint8Array(0),
      timestamp: Number(entryId.slice(0, entryId.indexOf('-'))) || Date.now(),
      baseAttempt: 1,
      contentType: 'application/json',
    };
  }
}

/**
 * Unsettled deliveries by stream and entry id. Two maps keyed by the entry id itself: a
 * `${stream} ${id}` key cost a string concatenation and a fresh hash per lookup (measured
 * on the consume path).
 */
export class Held {
  readonly #main = new Map<string, RedisDelivery>();
  readonly #retry = new Map<string, RedisDelivery>();
  readonly #retryStream: string | undefined;
  /** `retryStream`: a group's retry stream; undefined for a broadcast reader, which reads one stream. */
  constructor(retryStream: string | undefined) {
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
