import type { Codec } from './codec.js';
import { deadLetterHeaders, fitDeadLetter, parseDeadLetter } from './dead-letter.js';
import { BusbarError, ClosedError, HandlerTimeoutError, isPermanentFailure } from './errors.js';
import { channels, type Outcome, type SettledEvent } from './events.js';
import { type CloudEvent, decodeInbound } from './inbound.js';
import type { Logger } from './logger.js';
import type { Handler, HandlerContext, Message } from './message.js';
import { isPattern, RESERVED_HEADER_PREFIX } from './names.js';
import type { ResolvedSubscribeOptions } from './options.js';
import { backoffDelay, DEAD_LETTER_BACKOFF } from './retry.js';
import { validate } from './schema.js';
import { toFailure } from './thrown.js';
import type { Topic } from './topic.js';
import { HEADER, numericHeader } from './transport/headers.js';
import type { Delivery, OutgoingRecord, Transport, TransportSubscription } from './transport/spi.js';

/** What a subscription needs from its bus. */
export interface SubscriptionHost {
  readonly transport: Transport;
  readonly system: string;
  readonly logger: Logger;
  readonly closeTimeoutMs: number;
  /** Where this subscription's dead letters go (named after the subscription, checked at subscribe); undefined when off. */
  readonly deadLetterTopic: string | undefined;
  /** The largest record the transport takes (dead letters grow by their metadata and are trimmed to fit). */
  maxRecordBytes(): number;
  /** Declares the dead-letter reader group, then publishes the record with confirmation. */
  publishDeadLetter(record: OutgoingRecord): Promise<void>;
}

/** A running subscription, returned by `bus.subscribe`. */
export interface Subscription {
  readonly topic: string;
  readonly group: string | undefined;
  /** Stop intake, let in-flight handlers finish (up to the close timeout), settle them. Idempotent. */
  close(): Promise<void>;
  readonly closed: boolean;
}

export interface SubscriptionStats {
  readonly topic: string;
  readonly group: string | undefined;
  readonly state: 'running' | 'closing' | 'closed';
  readonly inFlight: number;
  readonly queued: number;
}

interface InFlight {
  readonly delivery: Delivery;
  readonly startedAt: number;
  controller: AbortController | undefined;
  fail: ((error: unknown) => void) | undefined;
  /** Released at close while its handler still ran: its late result must not settle anything. */
  abandoned: boolean;
  /** Set when the message is a CloudEvent: its id is the message id. */
  cloudEvent: CloudEvent | undefined;
}

class Context implements HandlerContext {
  readonly #rec: InFlight;
  readonly idempotencyKey: string | undefined;
  constructor(rec: InFlight, idempotencyKey: string | undefined) {
    this.#rec = rec;
    this.idempotencyKey = idempotencyKey;
  }
  /** Created on first use: most handlers never look at it, and an AbortController per message costs. */
  get signal(): AbortSignal {
    this.#rec.controller ??= new AbortController();
    return this.#rec.controller.signal;
  }
}

function userHeaders(headers: Readonly<Record<string, string>>): Readonly<Record<string, string>> {
  let own = true;
  for (const name in headers) {
    if (name.startsWith(RESERVED_HEADER_PREFIX)) {
      own = false;
      break;
    }
  }
  if (own) return headers;
  const out: Record<string, string> = {};
  for (const name in headers) {
    if (!name.startsWith(RESERVED_HEADER_PREFIX)) out[name] = headers[name] as string;
  }
  return out;
}

/** The headers a failed message's retry or dead letter carries: its own plus where the broker kept it. */
function failureHeaders(d: Delivery): Record<string, string> {
  return { ...d.headers, ...d.deadLetterHeaders?.() };
}

/**
 * A dead letter keeps the message's own content type, except when the body could not be decoded as that
 * type: then it is labelled as bytes, so whoever reads the dead-letter topic gets it, instead of a decode
 * failure of its own (and a dead letter of the dead letter).
 */
function deadLetterContentType(d: Delivery, error: Error | undefined, fallback: string): string {
  if (error !== undefined && BusbarError.is(error, 'BUSBAR_DECODE')) return 'application/octet-stream';
  return d.contentType ?? fallback;
}

/** The failure a pending dead letter recorded in its headers, for its settle event. */
function storedFailure(headers: Readonly<Record<string, string>>): Error {
  const info = parseDeadLetter(headers);
  const error = new Error(info?.errorMessage ?? 'unknown failure');
  Object.defineProperty(error, 'name', { value: info?.errorName || 'Error' });
  return error;
}

function isPromiseLike(value: unknown): value is PromiseLike<unknown> {
  return typeof (value as PromiseLike<unknown> | null)?.then === 'function';
}

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/**
 * The consumer runtime shared by every transport: queues deliveries, runs at
 * most `concurrency` handlers with one key at a time, and settles each
 * delivery exactly once (ack, retry, dead-letter, release).
 */
export class SubscriptionRuntime<T> implements Subscription {
  readonly topic: string;
  readonly group: string | undefined;
  readonly #def: Topic<T>;
  readonly #handler: Handler<T>;
  readonly #options: ResolvedSubscribeOptions;
  readonly #host: SubscriptionHost;
  /** Deliveries waiting for a slot, from #head on (shift() on a long array copies it: measured in #pump). */
  #queue: (Delivery | undefined)[] = [];
  #head = 0;
  readonly #inFlight = new Set<InFlight>();
  readonly #busyKeys = new Set<string>();
  readonly #settling = new Set<Promise<void>>();
  readonly #retryTimers = new Map<NodeJS.Timeout, Delivery>();
  readonly #leaseMs: number;
  readonly #skipDeadLetters: boolean;
  #native: TransportSubscription | undefined;
  #state: 'running' | 'closing' | 'closed' = 'running';
  #closing: Promise<void> | undefined;
  #sweeper: NodeJS.Timeout | undefined;
  #idle: (() => void) | undefined;
  /** Acks sent for handled messages and not yet answered by the broker. */
  #acking = 0;
  #acksDone: (() => void) | undefined;
  #pumping = false;
  #warnedGeneratedIds = false;

  constructor(
    topic: Topic<T>,
    pattern: string,
    handler: Handler<T>,
    options: ResolvedSubscribeOptions,
    host: SubscriptionHost,
  ) {
    this.#def = topic;
    this.topic = pattern;
    this.group = options.group;
    this.#handler = handler;
    this.#options = options;
    this.#host = host;
    this.#leaseMs = options.idempotency?.leaseMs ?? options.handlerTimeoutMs + 5_000;
    // A wildcard group would otherwise swallow the dead letters published under its own pattern.
    this.#skipDeadLetters = isPattern(pattern) && !pattern.endsWith('.dlq');
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

  stats(): SubscriptionStats {
    return {
      topic: this.topic,
      group: this.group,
      state: this.#state,
      inFlight: this.#inFlight.size,
      queued: this.#queue.length - this.#head,
    };
  }

  /** The transport's `onDelivery`. */
  readonly onDelivery = (delivery: Delivery): void => {
    if (this.#state !== 'running') {
      this.#track(delivery.release().catch((e) => this.#warn('release failed', e)));
      return;
    }
    if (
      this.#skipDeadLetters &&
      delivery.headers[HEADER.dlTopic] !== undefined &&
      delivery.headers[HEADER.dlPending] === undefined
    ) {
      this.#track(delivery.ack().catch((e) => this.#warn('ack failed', e)));
      return;
    }
    this.#queue.push(delivery);
    this.#pump();
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
      const queue = this.#queue;
      // A handler that closes the subscription synchronously stops the loop (close releases the rest).
      while (this.#state === 'running' && this.#inFlight.size < limit && this.#head < queue.length) {
        let index = this.#head;
        if (limit > 1 && this.#busyKeys.size > 0) {
          index = this.#runnable();
          if (index < 0) return;
        }
        let delivery: Delivery;
        if (index === this.#head) {
          delivery = queue[index] as Delivery;
          queue[this.#head++] = undefined;
        } else {
          delivery = queue.splice(index, 1)[0] as Delivery;
        }
        this.#start(delivery);
      }
    } finally {
      this.#pumping = false;
      this.#compact();
    }
  }

  /** The first queued delivery whose key is not being handled, or -1. */
  #runnable(): number {
    const queue = this.#queue;
    for (let i = this.#head; i < queue.length; i++) {
      const key = (queue[i] as Delivery).key;
      if (key === undefined || !this.#busyKeys.has(key)) return i;
    }
    return -1;
  }

  #compact(): void {
    if (this.#head === 0) return;
    if (this.#head === this.#queue.length) {
      this.#queue.length = 0;
      this.#head = 0;
    } else if (this.#head > 1024 && this.#head * 2 > this.#queue.length) {
      this.#queue = this.#queue.slice(this.#head);
      this.#head = 0;
    }
  }

  #start(delivery: Delivery): void {
    const rec: InFlight = {
      delivery,
      startedAt: Date.now(),
      controller: undefined,
      fail: undefined,
      abandoned: false,
      cloudEvent: undefined,
    };
    this.#inFlight.add(rec);
    const keyed = this.#options.concurrency > 1 && delivery.key !== undefined;
    if (keyed) this.#busyKeys.add(delivery.key as string);
    let pending: Promise<void> | undefined;
    try {
      pending = this.#process(rec);
    } catch (error) {
      this.#host.logger.error('Unexpected failure settling a message', { error });
    }
    if (pending === undefined) this.#finish(rec, keyed);
    else {
      pending
        .catch((error) => this.#host.logger.error('Unexpected failure settling a message', { error }))
        .finally(() => this.#finish(rec, keyed));
    }
  }

  #finish(rec: InFlight, keyed: boolean): void {
    this.#inFlight.delete(rec);
    if (keyed) this.#busyKeys.delete(rec.delivery.key as string);
    if (this.#state === 'running') this.#pump();
    else if (this.#inFlight.size === 0) this.#idle?.();
  }

  /**
   * Decodes, validates, runs the handler and settles. Returns undefined when all of it happened
   * synchronously (no async schema, no idempotency store, a handler that returned no promise): the
   * common case then costs no promise at all. The ack itself never holds the slot (see #ack).
   */
  #process(rec: InFlight): Promise<void> | undefined {
    const d = rec.delivery;
    // Already failed for good; only its dead-letter write was refused: try that again, not the handler.
    if (d.headers[HEADER.dlPending] !== undefined) return this.#writeDeadLetter(rec, undefined, 0);
    let payload: T;
    try {
      const decoded = decodeInbound(this.#def.codec as Codec<unknown>, d.body, d.contentType, d.headers);
      if (decoded.cloudEvent) rec.cloudEvent = decoded.cloudEvent;
      const schema = this.#def.schema;
      const valid = schema
        ? validate(schema, decoded.payload, `Message ${d.id} on '${d.topic}'`)
        : (decoded.payload as T);
      if (valid instanceof Promise) {
        return valid.then(
          (value) => this.#handle(rec, value),
          (error: unknown) => this.#deadLetter(rec, error, 0, 0),
        );
      }
      payload = valid;
    } catch (error) {
      // Undecodable or schema-invalid: retrying cannot help.
      return this.#deadLetter(rec, error, 0, 0);
    }
    return this.#handle(rec, payload);
  }

  #handle(rec: InFlight, payload: T): Promise<void> | undefined {
    const d = rec.delivery;
    if (d.idGenerated && !this.#warnedGeneratedIds && this.#options.idempotency) {
      this.#warnedGeneratedIds = true;
      this.#host.logger.warn(
        `Messages on '${d.topic}' carry no id (a foreign producer without message ids): each gets a unique one, so idempotency cannot deduplicate them (group ${this.group})`,
      );
    }
    const message: Message<T> = {
      id: rec.cloudEvent?.id ?? d.id,
      topic: d.topic,
      key: d.key,
      payload,
      headers: userHeaders(d.headers),
      timestamp: new Date(d.timestamp),
      attempt: d.attempt,
      deadLetter: d.headers[HEADER.dlTopic] === undefined ? undefined : parseDeadLetter(d.headers),
      contentType: d.contentType,
      cloudEvent: rec.cloudEvent,
      raw: d.raw,
    };
    if (this.#options.idempotency) return this.#handleOnce(rec, message);
    const started = Date.now();
    let result: unknown;
    try {
      result = this.#invoke(rec, message, undefined);
    } catch (error) {
      return this.#fail(rec, error, Date.now() - started);
    }
    if (!isPromiseLike(result)) {
      this.#ack(d, 'acked', Date.now() - started);
      return undefined;
    }
    return this.#bounded(rec, result).then(
      () => {
        if (!rec.abandoned) this.#ack(d, 'acked', Date.now() - started);
      },
      (error: unknown) => (rec.abandoned ? undefined : this.#fail(rec, error, Date.now() - started)),
    );
  }

  /** The handler behind the idempotency store: claim, run, complete (or release on failure). */
  async #handleOnce(rec: InFlight, message: Message<T>): Promise<void> {
    const d = rec.delivery;
    const idem = this.#options.idempotency as NonNullable<ResolvedSubscribeOptions['idempotency']>;
    const idemKey = `${this.group}:${message.id}`;
    const started = Date.now();
    try {
      if ((await this.#claim(idemKey)) === 'done') {
        if (!rec.abandoned) this.#ack(d, 'duplicate', 0);
        return;
      }
      const result = this.#invoke(rec, message, idemKey);
      if (isPromiseLike(result)) await this.#bounded(rec, result);
    } catch (error) {
      // A timed-out handler may still be running: keep its claim until the lease lapses, so the retry cannot run beside it.
      const stillRunning = BusbarError.is(error, 'BUSBAR_HANDLER_TIMEOUT');
      if (!stillRunning) await idem.store.release(idemKey).catch((e) => this.#warn('idempotency release failed', e));
      if (rec.abandoned) return;
      return this.#fail(rec, error, Date.now() - started);
    }
    // If this fails the message is still acked: a later duplicate may run again, which at-least-once allows.
    await idem.store.complete(idemKey, idem.ttlMs).catch((e) => this.#warn('idempotency complete failed', e));
    if (!rec.abandoned) this.#ack(d, 'acked', Date.now() - started);
  }

  /**
   * Acks without holding the handler's concurrency slot: the next message starts while the broker
   * confirms this one (waiting cost a broker round trip per `concurrency` messages, measured as the
   * main consume cost on Redis). The delivery stays counted by the transport's prefetch until then,
   * and close() waits for every ack.
   */
  #ack(d: Delivery, outcome: 'acked' | 'duplicate', durationMs: number): void {
    let acked: Promise<void>;
    try {
      acked = d.ack();
    } catch (error) {
      // A driver that throws instead of rejecting: same outcome, and nothing left counted.
      this.#warn('ack failed; the broker will redeliver', error);
      return;
    }
    this.#acking++;
    // Nobody listens for settle events (the usual case): shared callbacks, no closures per message.
    if (!channels.settled.hasSubscribers) {
      acked.then(this.#ackedQuietly, this.#ackFailed);
      return;
    }
    acked.then(() => {
      this.#acked();
      this.#emit(d, outcome, durationMs);
    }, this.#ackFailed);
  }

  #acked(): void {
    if (--this.#acking === 0) this.#acksDone?.();
  }

  readonly #ackedQuietly = (): void => this.#acked();
  readonly #ackFailed = (error: unknown): void => {
    this.#acked();
    this.#warn('ack failed; the broker will redeliver', error);
  };

  async #claim(key: string): Promise<'claimed' | 'done'> {
    const store = this.#options.idempotency?.store;
    if (!store) return 'claimed';
    for (let wait = 20; ; wait = Math.min(wait * 2, 500)) {
      const result = await store.claim(key, this.#leaseMs);
      if (result !== 'busy') return result;
      // A duplicate is running elsewhere: wait for it to finish (or its lease to lapse).
      if (this.#state !== 'running') throw new ClosedError('Subscription closed while waiting for a duplicate');
      await sleep(wait);
    }
  }

  /** Calls the handler (inside the `busbar:process` trace when someone listens); returns what it returned. */
  #invoke(rec: InFlight, message: Message<T>, idemKey: string | undefined): unknown {
    const context = new Context(rec, idemKey);
    if (!channels.process.hasSubscribers) return this.#handler(message, context);
    return channels.process.tracePromise(async () => this.#handler(message, context), {
      system: this.#host.system,
      topic: message.topic,
      group: this.group,
      message: {
        id: message.id,
        key: message.key,
        headers: message.headers,
        attempt: message.attempt,
        raw: message.raw,
      },
    });
  }

  /** An async handler's result, rejected early by the sweeper when the handler times out. */
  #bounded(rec: InFlight, result: PromiseLike<unknown>): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      rec.fail = reject;
      result.then(() => resolve(), reject);
    });
  }

  async #fail(rec: InFlight, thrown: unknown, durationMs: number): Promise<void> {
    const d = rec.delivery;
    const error = toFailure(thrown);
    const retry = this.#options.retry;
    const maxAttempts = retry === false ? 1 : retry.maxAttempts;
    if (retry === false || isPermanentFailure(error) || d.attempt >= maxAttempts) {
      return this.#deadLetter(rec, error, d.attempt, durationMs);
    }
    const delayMs = backoffDelay(retry, d.attempt);
    const headers = failureHeaders(d);
    headers[HEADER.firstFailure] ??= String(Date.now());
    const request = { delayMs, attempt: d.attempt + 1, headers };
    try {
      if (this.group === undefined) this.#retryLocally(d, request);
      else await d.retry(request);
    } catch (retryError) {
      this.#warn('scheduling a retry failed; releasing the message for redelivery', retryError);
      await d.release().catch((e) => this.#warn('release failed', e));
      return;
    }
    this.#emit(d, 'retried', durationMs, error, delayMs);
  }

  /** Broadcast subscriptions have no durable group to send a retry to: hold the message and run it again here. */
  #retryLocally(d: Delivery, request: { delayMs: number; attempt: number; headers: Record<string, string> }): void {
    const again: Delivery = {
      id: d.id,
      topic: d.topic,
      key: d.key,
      headers: request.headers,
      body: d.body,
      timestamp: d.timestamp,
      attempt: request.attempt,
      raw: d.raw,
      deadLetterHeaders: () => d.deadLetterHeaders?.(),
      ack: () => d.ack(),
      release: () => d.release(),
      retry: (next) => d.retry(next),
    };
    const timer = setTimeout(() => {
      this.#retryTimers.delete(timer);
      this.onDelivery(again);
    }, request.delayMs);
    this.#retryTimers.set(timer, d);
  }

  async #deadLetter(rec: InFlight, thrown: unknown, attempts: number, durationMs: number): Promise<void> {
    const d = rec.delivery;
    const error = toFailure(thrown);
    const topic = this.#host.deadLetterTopic;
    if (topic === undefined) {
      this.#host.logger.error(
        `Dropping message ${d.id} from '${d.topic}' after ${attempts} attempt(s): dead-lettering is off`,
        { group: this.group, error },
      );
      await d.ack().catch((e) => this.#warn('ack failed', e));
      return this.#emit(d, 'dropped', durationMs, error);
    }
    const headers = deadLetterHeaders(failureHeaders(d), {
      error,
      attempts,
      topic: d.topic,
      group: this.group,
      now: Date.now(),
    });
    return this.#writeDeadLetter(rec, { error, headers }, durationMs);
  }

  /**
   * Writes the dead letter, then acks. `failure` is undefined for a message that comes back after a refused
   * dead-letter write: its headers already hold the dead-letter metadata. A refused write is never a release
   * (the broker would hand the message straight back: a hot loop): the message goes through the retry path
   * with an exponential backoff of its own, and only the write is tried again.
   */
  async #writeDeadLetter(
    rec: InFlight,
    failure: { error: Error; headers: Record<string, string> } | undefined,
    durationMs: number,
  ): Promise<void> {
    const d = rec.delivery;
    const topic = this.#host.deadLetterTopic;
    if (topic === undefined) return this.#deadLetter(rec, new Error('dead-lettering was turned off'), 0, 0);
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
        contentType: deadLetterContentType(d, failure?.error, this.#def.codec.contentType),
        timestamp: d.timestamp,
      },
      this.#host.maxRecordBytes(),
    );
    try {
      await this.#host.publishDeadLetter(record);
    } catch (publishError) {
      return this.#deadLetterRefused(rec, record, refusals + 1, publishError);
    }
    if (rec.abandoned) return;
    await d.ack().catch((e) => this.#warn('ack after dead-lettering failed; a duplicate dead letter may follow', e));
    this.#emit(d, 'dead-lettered', durationMs, failure?.error ?? storedFailure(headers), undefined, topic);
  }

  async #deadLetterRefused(rec: InFlight, record: OutgoingRecord, refusals: number, cause: unknown): Promise<void> {
    const d = rec.delivery;
    const delayMs = backoffDelay(DEAD_LETTER_BACKOFF, refusals);
    // One line per message, then one per doubling of its refusals: a broker that says no for hours stays readable.
    if ((refusals & (refusals - 1)) === 0) {
      const log = refusals === 1 ? this.#host.logger.error : this.#host.logger.warn;
      log.call(
        this.#host.logger,
        `Dead-lettering message ${d.id} to '${record.topic}' was refused (${refusals}x); trying again in ${delayMs} ms`,
        { group: this.group, error: toFailure(cause) },
      );
    }
    this.#emit(d, 'dead-letter-failed', 0, toFailure(cause), delayMs, record.topic);
    if (rec.abandoned) return;
    const headers = { ...record.headers, [HEADER.dlPending]: String(refusals) };
    try {
      if (this.group === undefined) this.#retryLocally(d, { delayMs, attempt: d.attempt, headers });
      else await d.retry({ delayMs, attempt: d.attempt, headers });
    } catch (retryError) {
      // The retry path is refused too: hold the message here for the backoff, then give it back.
      this.#warn('scheduling the dead-letter retry failed; holding the message before releasing it', retryError);
      this.#holdThenRelease(d, delayMs);
    }
  }

  #holdThenRelease(d: Delivery, delayMs: number): void {
    const timer = setTimeout(() => {
      this.#retryTimers.delete(timer);
      this.#track(d.release().catch((e) => this.#warn('release failed', e)));
    }, delayMs);
    this.#retryTimers.set(timer, d);
  }

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

  #emit(d: Delivery, outcome: Outcome, durationMs: number, error?: unknown, delayMs?: number, dlq?: string): void {
    if (!channels.settled.hasSubscribers) return;
    const event: SettledEvent = {
      system: this.#host.system,
      topic: d.topic,
      group: this.group,
      id: d.id,
      attempt: d.attempt,
      outcome,
      durationMs,
      ...(error === undefined ? {} : { error: toFailure(error) }),
      ...(delayMs === undefined ? {} : { delayMs }),
      ...(dlq === undefined ? {} : { deadLetterTopic: dlq }),
    };
    channels.settled.publish(event);
  }

  #warn(message: string, error: unknown): void {
    this.#host.logger.warn(`${message} (topic '${this.topic}', group ${this.group ?? '-'})`, {
      error: toFailure(error),
    });
  }

  #track(promise: Promise<void>): void {
    this.#settling.add(promise);
    promise.finally(() => this.#settling.delete(promise));
  }

  /**
   * `deadline` (ms since the epoch) bounds the whole close, broker up or down: handlers get until then,
   * and the transport's stop/close calls are abandoned (logged) when they would run past it.
   */
  close(deadline = Date.now() + this.#host.closeTimeoutMs): Promise<void> {
    this.#closing ??= this.#close(deadline);
    return this.#closing;
  }

  /** Waits for `work` until the deadline (at least `floorMs`); a late result is logged, never awaited. */
  async #until(deadline: number, work: Promise<unknown>, what: string, floorMs = 0): Promise<void> {
    const budget = Math.max(deadline - Date.now(), floorMs);
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<'late'>((resolve) => {
      timer = setTimeout(() => resolve('late'), budget);
    });
    const result = await Promise.race([
      work.then(
        () => 'done' as const,
        (e: unknown) => this.#warn(`${what} failed`, e),
      ),
      late,
    ]);
    clearTimeout(timer);
    if (result === 'late') this.#warn(`${what} did not finish within the close timeout`, new Error('close timeout'));
  }

  async #close(deadline: number): Promise<void> {
    this.#state = 'closing';
    if (this.#native) await this.#until(deadline, this.#native.stop(), 'stopping intake', 100);
    const waiting = this.#queue.slice(this.#head) as Delivery[];
    this.#queue = [];
    this.#head = 0;
    for (const d of waiting) this.#track(d.release().catch((e) => this.#warn('release failed', e)));
    for (const [timer, d] of this.#retryTimers) {
      clearTimeout(timer);
      this.#track(d.release().catch((e) => this.#warn('release failed', e)));
    }
    this.#retryTimers.clear();
    if (this.#inFlight.size > 0) {
      const idle = new Promise<void>((resolve) => {
        this.#idle = resolve;
      });
      const timer = setTimeout(() => this.#idle?.(), Math.max(0, deadline - Date.now()));
      await idle;
      clearTimeout(timer);
    }
    // Handlers still running past the grace period: abort them and give their messages back, unacked.
    for (const rec of this.#inFlight) {
      rec.abandoned = true;
      rec.controller?.abort(new ClosedError('Subscription closed'));
      this.#track(rec.delivery.release().catch((e) => this.#warn('release failed', e)));
      this.#emit(rec.delivery, 'released', Date.now() - rec.startedAt);
    }
    // Releases and acks go to the broker: bounded like the rest (a broker that is down never answers).
    const settled = (async () => {
      while (this.#settling.size > 0) await Promise.all(this.#settling);
      if (this.#acking > 0) {
        await new Promise<void>((resolve) => {
          this.#acksDone = resolve;
        });
      }
    })();
    await this.#until(deadline, settled, 'settling released and acked messages', 100);
    if (this.#sweeper) clearInterval(this.#sweeper);
    if (this.#native) await this.#until(deadline, this.#native.close(), 'closing the subscription', 100);
    this.#state = 'closed';
  }
}
