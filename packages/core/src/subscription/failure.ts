import { deadLetterHeaders, fitDeadLetter, parseDeadLetter, portableHeaders } from '../dead-letter.js';
import { BusbarError, isPermanentFailure } from '../errors.js';
import type { ResolvedSubscribeOptions } from '../options.js';
import { backoffDelay, DEAD_LETTER_BACKOFF } from '../retry.js';
import { toFailure } from '../thrown.js';
import { HEADER, numericHeader } from '../transport/headers.js';
import type { Delivery, OutgoingRecord, RetryRequest } from '../transport/spi.js';
import type { Settlement } from './settle.js';
import type { InFlight, SubscriptionHost } from './state.js';

/** The headers a failed message's retry or dead letter carries: its own plus where the broker kept it. */
function failureHeaders(d: Delivery): Record<string, string> {
  return { ...d.headers, ...d.deadLetterHeaders?.() };
}

/**
 * A dead letter keeps the message's own content type, except when the body could not be decoded as that
 * type: then it is labelled as bytes, so whoever reads the dead-letter topic gets it, instead of a decode
 * failure of its own (and a dead letter of the dead letter).
 */
function deadLetterContentType(
  d: Delivery,
  error: Error | undefined,
  headers: Readonly<Record<string, string>>,
  fallback: string,
): string {
  // No error: a dead letter whose first write was refused, its failure recorded in its headers.
  const undecodable =
    error === undefined ? headers[HEADER.dlErrorName] === 'DecodeError' : BusbarError.is(error, 'BUSBAR_DECODE');
  if (undecodable) return 'application/octet-stream';
  return d.contentType ?? fallback;
}

/** The failure a pending dead letter recorded in its headers, for its settle event. */
function storedFailure(headers: Readonly<Record<string, string>>): Error {
  const info = parseDeadLetter(headers);
  const error = new Error(info?.errorMessage ?? 'unknown failure');
  Object.defineProperty(error, 'name', { value: info?.errorName || 'Error' });
  return error;
}

export interface FailureContext {
  readonly host: SubscriptionHost;
  readonly options: ResolvedSubscribeOptions;
  readonly group: string | undefined;
  /** The content type a dead letter gets when the message carried none (the topic codec's). */
  readonly contentType: string;
  readonly settle: Settlement;
  /** Hands a message back to this subscription's queue (a broadcast retry held here). */
  readonly redeliver: (d: Delivery) => void;
  /** Failures are retried, never dead-lettered or dropped (RuntimeShape.keepFailed). */
  readonly keepFailed: boolean;
}

/**
 * What happens to a message whose handler failed: the retry-or-dead-letter decision and its backoff, the
 * dead-letter write, and a refused write's own backoff. Every path ends in exactly one settlement of the
 * delivery (retry, ack after the dead letter, or a release after a hold), never in a tight loop.
 */
export class Failures {
  readonly #c: FailureContext;
  /** Messages held here until a timer fires (broadcast retries, refused writes): close() releases them. */
  readonly #held = new Map<NodeJS.Timeout, Delivery>();
  readonly #parked: Delivery[] = [];

  constructor(context: FailureContext) {
    this.#c = context;
  }

  /** The handler failed (threw, rejected or timed out): retry with backoff, or dead-letter. */
  async fail(rec: InFlight, thrown: unknown, durationMs: number): Promise<void> {
    const d = rec.delivery;
    const error = toFailure(thrown);
    const retry = this.#c.options.retry;
    const maxAttempts = retry === false ? 1 : retry.maxAttempts;
    if (retry === false || isPermanentFailure(error) || d.attempt >= maxAttempts) {
      return this.deadLetter(rec, error, d.attempt, durationMs);
    }
    const headers = failureHeaders(d);
    headers[HEADER.firstFailure] ??= String(Date.now());
    return this.#retryLater(d, error, durationMs, backoffDelay(retry, d.attempt), headers);
  }

  /** The next attempt after `delayMs`; a retry the broker refuses holds the message here for that long instead. */
  async #retryLater(
    d: Delivery,
    error: Error,
    durationMs: number,
    delayMs: number,
    headers: Record<string, string>,
  ): Promise<void> {
    try {
      await this.#retry(d, { delayMs, attempt: d.attempt + 1, headers });
    } catch (retryError) {
      this.#c.settle.warn('scheduling a retry failed; holding the message before releasing it', retryError);
      this.#holdThenRelease(d, delayMs);
      return;
    }
    this.#c.settle.emit(d, 'retried', durationMs, error, delayMs);
  }

  /**
   * A message published with `delayMs` arrived before it is due: through the retry path until then, as the
   * same attempt, without the due time (a consumer whose clock runs behind must not park it again).
   */
  async defer(rec: InFlight, delayMs: number): Promise<void> {
    const d = rec.delivery;
    const headers = { ...d.headers };
    delete headers[HEADER.deliverAt];
    try {
      await this.#retry(d, { delayMs, attempt: d.attempt, headers });
    } catch (retryError) {
      this.#c.settle.warn('parking a delayed message failed; holding it before releasing it', retryError);
      this.#holdThenRelease(d, Math.min(delayMs, 5_000));
    }
  }

  /** Retrying cannot help (or the attempts are used up): write the dead letter, then ack. */
  async deadLetter(rec: InFlight, thrown: unknown, attempts: number, durationMs: number): Promise<void> {
    const d = rec.delivery;
    const error = toFailure(thrown);
    if (this.#c.keepFailed) return this.#keep(rec, error, durationMs);
    if (this.#c.host.deadLetterTopic === undefined) {
      this.#c.host.logger.error(
        `Dropping message ${d.id} from '${d.topic}' after ${attempts} attempt(s): dead-lettering is off`,
        { group: this.#c.group, error },
      );
      await d.ack().catch((e) => this.#c.settle.warn('ack failed', e));
      return this.#c.settle.emit(d, 'dropped', durationMs, error);
    }
    const headers = deadLetterHeaders(failureHeaders(d), {
      error,
      attempts,
      topic: d.topic,
      group: this.#c.group,
      now: Date.now(),
    });
    return this.writeDeadLetter(rec, { error, headers }, durationMs);
  }

  /**
   * A message this subscription must not give up on (a dead letter read back): whatever the failure, it comes
   * back after the retry backoff (capped by its `maxDelayMs`), however many attempts it took. One log line per
   * doubling of its attempts, so a reader that keeps failing stays readable.
   */
  async #keep(rec: InFlight, error: Error, durationMs: number): Promise<void> {
    const d = rec.delivery;
    const retry = this.#c.options.retry;
    const delayMs = backoffDelay(retry === false ? DEAD_LETTER_BACKOFF : retry, d.attempt);
    if ((d.attempt & (d.attempt - 1)) === 0) {
      this.#c.host.logger.warn(
        `Message ${d.id} from '${d.topic}' failed (${d.attempt}x); it is kept and tried again in ${delayMs} ms`,
        { group: this.#c.group, error },
      );
    }
    return this.#retryLater(d, error, durationMs, delayMs, failureHeaders(d));
  }

  /**
   * Writes the dead letter, then acks. `failure` is undefined for a message that comes back after a refused
   * dead-letter write: its headers already hold the dead-letter metadata. A refused write is never a release
   * (the broker would hand the message straight back: a hot loop): the message goes through the retry path
   * with an exponential backoff of its own, and only the write is tried again.
   */
  async writeDeadLetter(
    rec: InFlight,
    failure: { error: Error; headers: Record<string, string> } | undefined,
    durationMs: number,
  ): Promise<void> {
    const d = rec.delivery;
    const topic = this.#c.host.deadLetterTopic;
    if (topic === undefined) return this.deadLetter(rec, new Error('dead-lettering was turned off'), 0, 0);
    const headers = failure?.headers ?? { ...d.headers };
    const refusals = numericHeader(headers[HEADER.dlPending], 0);
    delete headers[HEADER.dlPending];
    delete headers[HEADER.attempt];
    const record = fitDeadLetter(
      {
        topic,
        id: d.id,
        key: d.key,
        headers,
        body: d.body,
        contentType: deadLetterContentType(d, failure?.error, headers, this.#c.contentType),
        timestamp: d.timestamp,
      },
      this.#c.host.maxRecordBytes(),
    );
    try {
      await this.#publish(record);
    } catch (publishError) {
      return this.#refused(rec, record, refusals + 1, publishError);
    }
    if (rec.abandoned) return;
    await d
      .ack()
      .catch((e) => this.#c.settle.warn('ack after dead-lettering failed; a duplicate dead letter may follow', e));
    this.#c.settle.emit(d, 'dead-lettered', durationMs, failure?.error ?? storedFailure(headers), undefined, topic);
  }

  /** Publishes a dead letter; refused for its headers, once more without the ones that are not portable. */
  async #publish(record: OutgoingRecord): Promise<void> {
    try {
      await this.#c.host.publishDeadLetter(record);
    } catch (error) {
      const portable = BusbarError.is(error, 'BUSBAR_INVALID_HEADER') ? portableHeaders(record.headers) : undefined;
      if (portable === undefined) throw error;
      this.#c.host.logger.warn(`Dead letter ${record.id} to '${record.topic}': headers refused, written without them`, {
        group: this.#c.group,
        error: toFailure(error),
      });
      await this.#c.host.publishDeadLetter({ ...record, headers: portable });
    }
  }

  async #refused(rec: InFlight, record: OutgoingRecord, refusals: number, cause: unknown): Promise<void> {
    const d = rec.delivery;
    const { host, settle } = this.#c;
    const delayMs = backoffDelay(DEAD_LETTER_BACKOFF, refusals);
    // One line per message, then one per doubling of its refusals: a broker that says no for hours stays readable.
    if ((refusals & (refusals - 1)) === 0) {
      const log = refusals === 1 ? host.logger.error : host.logger.warn;
      log.call(
        host.logger,
        `Dead-lettering message ${d.id} to '${record.topic}' was refused (${refusals}x); trying again in ${delayMs} ms`,
        { group: this.#c.group, error: toFailure(cause) },
      );
    }
    settle.emit(d, 'dead-letter-failed', 0, toFailure(cause), delayMs, record.topic);
    if (rec.abandoned) return;
    const headers = { ...record.headers, [HEADER.dlPending]: String(refusals) };
    try {
      await this.#retry(d, { delayMs, attempt: d.attempt, headers });
    } catch (retryError) {
      // The retry path is refused too: hold the message here for the backoff, then give it back.
      settle.warn('scheduling the dead-letter retry failed; holding the message before releasing it', retryError);
      this.#holdThenRelease(d, delayMs);
    }
  }

  /** A group retries through the broker; a broadcast subscription has no group to send it to: hold it here. */
  #retry(d: Delivery, request: RetryRequest): Promise<void> {
    if (this.#c.group !== undefined) return d.retry(request);
    this.#hold(d, request.delayMs, () => this.#c.redeliver(again(d, request)));
    return Promise.resolve();
  }

  #holdThenRelease(d: Delivery, delayMs: number): void {
    this.#hold(d, delayMs, () => this.#c.settle.release(d));
  }

  #hold(d: Delivery, delayMs: number, then: () => void): void {
    // One ms more: a timer may fire up to 1 ms early by Date.now(), and a delayed message held here (a broadcast
    // subscription's) is handed over without another look at its due time.
    const timer = setTimeout(() => {
      this.#held.delete(timer);
      then();
    }, delayMs + 1);
    this.#held.set(timer, d);
  }

  /** Leaves a message unsettled until close (a handler returned HOLD). */
  park(d: Delivery): void {
    this.#parked.push(d);
  }

  /** At close: every held or parked message goes back to the broker now. */
  releaseHeld(): void {
    for (const [timer, d] of this.#held) {
      clearTimeout(timer);
      this.#c.settle.release(d);
    }
    this.#held.clear();
    for (const d of this.#parked.splice(0)) this.#c.settle.release(d);
  }
}

/** The same delivery as it comes back from a local retry: new attempt and headers, same settlement. */
function again(d: Delivery, request: RetryRequest): Delivery {
  return {
    id: d.id,
    topic: d.topic,
    key: d.key,
    headers: request.headers,
    body: d.body,
    timestamp: d.timestamp,
    contentType: d.contentType,
    attempt: request.attempt,
    raw: d.raw,
    deadLetterHeaders: () => d.deadLetterHeaders?.(),
    ack: () => d.ack(),
    release: () => d.release(),
    retry: (next) => d.retry(next),
  };
}
