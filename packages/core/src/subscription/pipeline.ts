import type { Codec } from '../codec.js';
import { parseDeadLetter } from '../dead-letter.js';
import { BusbarError, ClosedError, TimeoutError } from '../errors.js';
import { channels } from '../events.js';
import { decodeInbound } from '../inbound.js';
import type { Handler, Message } from '../message.js';
import { RESERVED_HEADER_PREFIX } from '../names.js';
import { MAX_TIMER_MS, type ResolvedSubscribeOptions } from '../options.js';
import { validate } from '../schema.js';
import type { Topic } from '../topic.js';
import { addWireHeader, HEADER } from '../transport/headers.js';
import { withTimeout } from '../transport/util.js';
import type { Failures } from './failure.js';
import type { Settlement } from './settle.js';
import { Context, HOLD, type InFlight, type SubscriptionHost } from './state.js';

/**
 * The handler's own copy of the user headers, never the delivery's object: a handler or middleware that edits
 * `message.headers` (JavaScript does not stop it) must not change what the message's retry or dead letter
 * carries. A copy costs less than freezing (measured).
 */
function userHeaders(headers: Readonly<Record<string, string>>): Readonly<Record<string, string>> {
  let own = true;
  for (const name in headers) {
    if (name.startsWith(RESERVED_HEADER_PREFIX)) {
      own = false;
      break;
    }
  }
  if (own) return { ...headers };
  const out: Record<string, string> = {};
  for (const name in headers) {
    if (name.startsWith(RESERVED_HEADER_PREFIX)) continue;
    // A foreign `__proto__` header must stay a header, not become the record's [[Prototype]].
    if (name === '__proto__') addWireHeader(out, name, headers[name]);
    else out[name] = headers[name] as string;
  }
  return out;
}

/** Reading `then` may throw (a Proxy handed back by a handler): the caller treats that as the handler's failure. */
function isPromiseLike(value: unknown): value is PromiseLike<unknown> {
  return typeof (value as PromiseLike<unknown> | null)?.then === 'function';
}

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

export interface PipelineContext<T> {
  readonly def: Topic<T>;
  readonly handler: Handler<T>;
  readonly options: ResolvedSubscribeOptions;
  readonly host: SubscriptionHost;
  readonly group: string | undefined;
  readonly settle: Settlement;
  readonly failures: Failures;
  readonly running: () => boolean;
  /** RuntimeShape.bytesWhenUndecodable. */
  readonly bytesWhenUndecodable: boolean;
}

/**
 * One message's way from delivery to settlement: decode (content type, CloudEvents, codec), validate, claim
 * the idempotency key, run the handler (bounded by the sweeper's timeout), then ack or hand the failure to
 * {@link Failures}. Synchronous end to end when it can be (no async schema, no idempotency store, a handler
 * that returns no promise): the common case then costs no promise at all.
 */
export class Pipeline<T> {
  readonly #c: PipelineContext<T>;
  readonly #leaseMs: number;
  #warnedGeneratedIds = false;

  constructor(context: PipelineContext<T>) {
    this.#c = context;
    const { options } = context;
    this.#leaseMs = options.idempotency?.leaseMs ?? options.handlerTimeoutMs + 5_000;
  }

  /** Returns undefined when the message was settled synchronously. */
  process(rec: InFlight): Promise<void> | undefined {
    const d = rec.delivery;
    const { def, failures } = this.#c;
    // Already failed for good; only its dead-letter write was refused: try that again, not the handler. (Ours
    // carries its failure too: a foreign `busbar-dl-pending` alone does not skip the handler.)
    if (d.headers[HEADER.dlPending] !== undefined && d.headers[HEADER.dlErrorName] !== undefined) {
      return failures.writeDeadLetter(rec, undefined, 0);
    }
    const deliverAt = d.headers[HEADER.deliverAt];
    // No publish asks for more than MAX_TIMER_MS past its own time (an hour more for a broker clock that is
    // behind): a due time beyond that, or not a number, is not busbar's and is not waited for (a foreign header
    // of ten years, in the case that showed it).
    if (deliverAt !== undefined && Number(deliverAt) - d.timestamp <= MAX_TIMER_MS + 3_600_000) {
      const wait = Number(deliverAt) - Date.now();
      if (wait > 0) return failures.defer(rec, Math.min(Math.ceil(wait), MAX_TIMER_MS));
    }
    let payload: T;
    try {
      const decoded = decodeInbound(def.codec as Codec<unknown>, d.body, d.contentType, d.headers);
      if (decoded.cloudEvent) rec.cloudEvent = decoded.cloudEvent;
      // An asynchronous schema (a lookup) gets the handler's time, and one that timed out or failed retryably
      // is retried like a handler: the message was never found invalid.
      const valid = def.schema
        ? validate(def.schema, decoded.payload, `Message ${d.id} on '${d.topic}'`, this.#c.options.handlerTimeoutMs)
        : (decoded.payload as T);
      if (valid instanceof Promise) {
        return valid.then(
          (value) => this.#handle(rec, value),
          (error: unknown) =>
            BusbarError.is(error) && error.retryable
              ? failures.fail(rec, error, 0)
              : failures.deadLetter(rec, error, 0, 0),
        );
      }
      payload = valid;
    } catch (error) {
      // A dead letter read back is handed over as it is: it has nowhere further to go (labelled wrongly by a
      // foreign producer or an older busbar, it would otherwise be dropped or retried for good).
      if (this.#c.bytesWhenUndecodable && BusbarError.is(error, 'BUSBAR_DECODE')) payload = d.body as T;
      // Undecodable or schema-invalid: retrying cannot help.
      else return failures.deadLetter(rec, error, 0, 0);
    }
    return this.#handle(rec, payload);
  }

  #handle(rec: InFlight, payload: T): Promise<void> | undefined {
    const d = rec.delivery;
    const { options, settle, failures } = this.#c;
    // A CloudEvent brings its own id (structured mode: only core, which parsed the body, knows it).
    if (d.idGenerated && options.idempotency && rec.cloudEvent === undefined && !this.#warnedGeneratedIds) {
      this.#warnedGeneratedIds = true;
      this.#c.host.logger.warn(
        `Messages on '${d.topic}' carry no id (a foreign producer without message ids): each gets a unique one, so idempotency cannot deduplicate them (group ${this.#c.group})`,
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
    if (options.idempotency) return this.#handleOnce(rec, message);
    const started = Date.now();
    let result: unknown;
    let isAsync: boolean;
    try {
      result = this.#invoke(rec, message, undefined);
      isAsync = isPromiseLike(result);
    } catch (error) {
      return failures.fail(rec, error, Date.now() - started);
    }
    if (!isAsync) {
      if (result === HOLD) failures.park(d);
      else settle.ack(d, 'acked', started);
      return undefined;
    }
    // One promise and one `then` per async message; the sweeper's `rec.fail` settles it early on a timeout.
    return new Promise<void>((resolve, reject) => {
      let done = false;
      const failed = (error: unknown) => {
        if (done) return;
        done = true;
        rec.fail = undefined;
        if (rec.abandoned) return resolve();
        try {
          resolve(failures.fail(rec, error, Date.now() - started));
        } catch (e) {
          reject(e);
        }
      };
      rec.fail = failed;
      const succeeded = (value: unknown) => {
        if (done) return;
        done = true;
        rec.fail = undefined;
        if (rec.abandoned) return resolve();
        try {
          if (value === HOLD) failures.park(d);
          else settle.ack(d, 'acked', started);
          resolve();
        } catch (e) {
          reject(e);
        }
      };
      // A thenable's own `then` may throw (a hand-written one, not a Promise): that is the handler failing.
      try {
        (result as PromiseLike<unknown>).then(succeeded, failed);
      } catch (error) {
        failed(error);
      }
    });
  }

  /**
   * The handler behind the idempotency store: claim, run, complete (or release on failure). Every store call is
   * bounded by the handler timeout: a store that never answers fails the message (claim) or lets it be acked
   * without the mark (complete), instead of holding it for good.
   */
  async #handleOnce(rec: InFlight, message: Message<T>): Promise<void> {
    const d = rec.delivery;
    const { settle, failures } = this.#c;
    const idem = this.#c.options.idempotency as NonNullable<ResolvedSubscribeOptions['idempotency']>;
    const idemKey = `${this.#c.group}:${message.id}`;
    const started = Date.now();
    let claimed = false;
    try {
      if ((await this.#claim(idemKey)) === 'done') {
        if (!rec.abandoned) settle.ack(d, 'duplicate', undefined);
        return;
      }
      claimed = true;
      const result = this.#invoke(rec, message, idemKey);
      if (isPromiseLike(result)) await this.#bounded(rec, result);
    } catch (error) {
      // Only a claim this message holds is released, and not while a timed-out handler may still run (the lease
      // keeps its retry from running beside it). Not awaited: a store that hangs must not hold the message.
      if (claimed && !BusbarError.is(error, 'BUSBAR_HANDLER_TIMEOUT')) {
        void this.#store('release', () => idem.store.release(idemKey)).catch((e: unknown) =>
          settle.warn('idempotency release failed', e),
        );
      }
      if (rec.abandoned) return;
      return failures.fail(rec, error, Date.now() - started);
    }
    // If this fails the message is still acked: a later duplicate may run again, which at-least-once allows.
    await this.#store('complete', () => idem.store.complete(idemKey, idem.ttlMs)).catch((e: unknown) =>
      settle.warn('idempotency complete failed', e),
    );
    if (!rec.abandoned) settle.ack(d, 'acked', started);
  }

  /** One call of the idempotency store, bounded by the handler timeout. */
  #store<R>(what: string, call: () => PromiseLike<R>): Promise<R> {
    const ms = this.#c.options.handlerTimeoutMs;
    return withTimeout(
      Promise.resolve().then(call),
      ms,
      () => new TimeoutError(`The idempotency store did not answer ${what}() within ${ms} ms`),
    );
  }

  async #claim(key: string): Promise<'claimed' | 'done'> {
    const store = this.#c.options.idempotency?.store;
    if (!store) return 'claimed';
    for (let wait = 20; ; wait = Math.min(wait * 2, 500)) {
      const result = await this.#store('claim', () => store.claim(key, this.#leaseMs));
      if (result !== 'busy') return result;
      // A duplicate is running elsewhere: wait for it to finish (or its lease to lapse).
      if (!this.#c.running()) throw new ClosedError('Subscription closed while waiting for a duplicate');
      await sleep(wait);
    }
  }

  /** Calls the handler (inside the `busbar:process` trace when someone listens); returns what it returned. */
  #invoke(rec: InFlight, message: Message<T>, idemKey: string | undefined): unknown {
    const context = new Context(rec, idemKey);
    const handler = this.#c.handler;
    if (!channels.process.hasSubscribers) return handler(message, context);
    return channels.process.tracePromise(async () => handler(message, context), {
      system: this.#c.host.system,
      topic: message.topic,
      group: this.#c.group,
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
  #bounded(rec: InFlight, result: PromiseLike<unknown>): Promise<unknown> {
    return new Promise<unknown>((resolve, reject) => {
      rec.fail = reject;
      result.then(resolve, reject);
    });
  }
}
