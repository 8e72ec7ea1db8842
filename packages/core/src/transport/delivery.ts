import type { BusbarError } from '../errors.js';
import { type NativeErrorContext, nativeError } from './errors.js';
import type { Delivery, RetryRequest } from './spi.js';

/** What a driver decoded from one native message: the fields every delivery has. */
export interface DeliveryFields {
  readonly id: string;
  readonly topic: string;
  readonly key: string | undefined;
  readonly headers: Readonly<Record<string, string>>;
  readonly body: Uint8Array;
  readonly timestamp: number;
  readonly contentType?: string | undefined;
  readonly idGenerated?: boolean | undefined;
  readonly attempt: number;
}

/** Which settle call failed, for the error's message and class. */
export type SettleAction = 'ack' | 'retry' | 'release';

const OPEN = 0;
const RETRYING = 1;
const SETTLED = 2;
/**
 * What `ack()` and `release()` of a {@link SettleOnce} return when there was nothing to wait for (the native
 * call completed synchronously, or the delivery was settled before): core checks for it and skips a promise
 * reaction per message.
 */
export const SETTLED_SYNC: Promise<void> = Promise.resolve();

/**
 * The settle-once part of every driver's `Delivery`: exactly one of `ack`, `retry` and `release` reaches
 * the broker, once; later calls resolve without doing anything. A retry that fails leaves the delivery open,
 * so core can still release it. Whatever the native calls throw or reject with reaches core as a
 * `BusbarError` (`settleError`). A driver extends it and writes only the three native steps:
 *
 * - `ackNative()`: the group is done with the message (an ack, a settled offset). Return nothing when it
 *   completed synchronously (most clients queue an ack without waiting): no promise is made per message.
 * - `retryNative(request)`: the redelivery is durable (a retry-queue copy, a broker delay) and the original
 *   acked; it is settled only once this resolves.
 * - `releaseNative()`: give the message back unprocessed.
 *
 * `settled(action)` runs once, when the delivery is settled, for drivers that track what they hold.
 */
export abstract class SettleOnce<Raw = unknown> implements Delivery {
  readonly id: string;
  readonly topic: string;
  readonly key: string | undefined;
  readonly headers: Readonly<Record<string, string>>;
  readonly body: Uint8Array;
  readonly timestamp: number;
  readonly contentType: string | undefined;
  readonly idGenerated: boolean;
  readonly attempt: number;
  readonly raw: Raw;
  #state: number = OPEN;

  constructor(fields: DeliveryFields, raw: Raw) {
    this.id = fields.id;
    this.topic = fields.topic;
    this.key = fields.key;
    this.headers = fields.headers;
    this.body = fields.body;
    this.timestamp = fields.timestamp;
    this.contentType = fields.contentType;
    this.idGenerated = fields.idGenerated === true;
    this.attempt = fields.attempt;
    this.raw = raw;
  }

  /** True once `ack`, `retry` or `release` has taken effect (or begun, for ack and release). */
  get isSettled(): boolean {
    return this.#state === SETTLED;
  }

  protected abstract ackNative(): Promise<void> | undefined;
  protected abstract retryNative(request: RetryRequest): Promise<void>;
  protected abstract releaseNative(): Promise<void> | undefined;

  /** Called once, as the delivery becomes settled. */
  protected settled(_action: SettleAction): void {}

  /** The error for a failed native settle call: says which call on which topic, mapped by `mapError`. */
  protected settleError(error: unknown, action: SettleAction): BusbarError {
    const what = action === 'ack' ? 'Acking' : action === 'retry' ? 'Retrying' : 'Releasing';
    return this.mapError(error, {
      what: `${what} a message of '${this.topic}' failed`,
      op: action === 'retry' ? 'publish' : 'consume',
      secrets: [],
    });
  }

  /** A native error as a BusbarError: core's mapping by default; a driver passes its own `toBusbarError`. */
  protected mapError(error: unknown, context: NativeErrorContext): BusbarError {
    return nativeError(error, context);
  }

  ack(): Promise<void> {
    return this.#finish('ack');
  }

  release(): Promise<void> {
    return this.#finish('release');
  }

  async retry(request: RetryRequest): Promise<void> {
    if (this.#state !== OPEN) return;
    this.#state = RETRYING;
    try {
      await this.retryNative(request);
    } catch (error) {
      this.#state = OPEN;
      throw this.settleError(error, 'retry');
    }
    this.#state = SETTLED;
    this.settled('retry');
  }

  #finish(action: 'ack' | 'release'): Promise<void> {
    if (this.#state !== OPEN) return SETTLED_SYNC;
    this.#state = SETTLED;
    this.settled(action);
    let pending: Promise<void> | undefined;
    try {
      pending = action === 'ack' ? this.ackNative() : this.releaseNative();
    } catch (error) {
      return Promise.reject(this.settleError(error, action));
    }
    if (pending === undefined) return SETTLED_SYNC;
    return pending.then(undefined, (error: unknown) => {
      throw this.settleError(error, action);
    });
  }
}
