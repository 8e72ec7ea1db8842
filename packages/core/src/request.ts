import { type Codec, jsonCodec } from './codec.js';
import { BusbarError, ClosedError, ConfigError, RemoteError, TimeoutError, UnsupportedError } from './errors.js';
import { decodeInbound } from './inbound.js';
import type { Logger } from './logger.js';
import type { HandlerContext, Message } from './message.js';
import { type IdempotencyOptions, MAX_TIMER_MS, type ResolvedRespondOptions } from './options.js';
import { RequestServer, remoteCode, remoteMessage } from './respond.js';
import { validate } from './schema.js';
import { signalOf } from './signal.js';
import type { Topic } from './topic.js';
import { HEADER } from './transport/headers.js';
import type { OutgoingRecord, ReplyRecord, RequestReply, TransportSubscription } from './transport/spi.js';

export interface RequestOptions {
  /** How long to wait for the reply. Default 5000 ms. A timeout is a TimeoutError (not retryable by default). */
  timeoutMs?: number;
  signal?: AbortSignal;
  headers?: Record<string, string>;
  /**
   * The request's id; default a fresh UUID. Asking again with the same id after a timeout lets a responder with
   * `idempotency` recognise the retry: its handler does not run twice.
   */
  id?: string;
}

export interface RespondOptions {
  /** Responders of one group share the requests (one answers each); without a group every responder answers. */
  group?: string;
  /** Requests handled at once. Default 1. */
  concurrency?: number;
  /** A handler running longer fails the request (the caller gets a RemoteError). Default 30000 ms. */
  handlerTimeoutMs?: number;
  /** Send the responder's error stack with a failed reply (never by default: stacks describe your code). */
  exposeStack?: boolean;
  /**
   * Run the handler at most once per request id (needs a `group`; keys are `group:requestId`, as for
   * subscriptions). A request whose id was already answered, or is being answered, gets no second run: its
   * caller gets a RemoteError with `remoteCode` 'BUSBAR_DUPLICATE' (the reply went to the first request; none is
   * stored). A handler that throws releases its claim, so the caller may ask again.
   */
  idempotency?: IdempotencyOptions;
}

export type Responder<T, R> = (message: Message<T>, context: HandlerContext) => R | Promise<R>;

/** Checks what `bus.request` takes beside the payload (JavaScript callers pass anything); returns its signal. */
export function checkRequestOptions(options: RequestOptions): AbortSignal | undefined {
  const signal = signalOf(options, 'request options');
  const { timeoutMs } = options;
  if (timeoutMs !== undefined && (!Number.isInteger(timeoutMs) || timeoutMs <= 0 || timeoutMs > MAX_TIMER_MS)) {
    throw new ConfigError(`Invalid request options: timeoutMs must be a positive integer of at most ${MAX_TIMER_MS}`);
  }
  return signal;
}

/** A timed-out request may still have been answered: the outcome is unknown, so it is not retried for the caller. */
function requestFailure(error: unknown): unknown {
  if (BusbarError.is(error, 'BUSBAR_TIMEOUT') && error.retryable) {
    return new TimeoutError(error.message, { retryable: false, cause: error.cause });
  }
  return error;
}

/** A reply as the caller's value: a RemoteError when the responder failed, else the body by the response schema. */
function replyValue<R>(def: Topic<unknown, R>, reply: ReplyRecord): R | Promise<R> {
  const code = reply.headers[HEADER.replyError];
  // Bounded and cleaned as busbar's own responders send them: a foreign one may send anything.
  if (code !== undefined) {
    throw new RemoteError(
      remoteCode(code),
      remoteMessage(reply.headers[HEADER.replyErrorMessage] ?? 'the responder failed'),
    );
  }
  const { payload } = decodeInbound(jsonCodec as Codec<unknown>, reply.body, reply.contentType, reply.headers);
  if (!def.response) return payload as R;
  return validate(def.response, payload, `Reply on '${def.name}'`);
}

/**
 * Request/reply over the transport's native mechanism. Requests do not go through retry or dead letters (the
 * caller is waiting): a responder failure becomes a typed RemoteError for the caller, and the caller decides.
 */
export class Requests {
  readonly #rr: RequestReply | undefined;
  readonly #system: string;
  readonly #logger: Logger;
  readonly #pending = new Set<(error: unknown) => void>();
  readonly #maxReplyBytes: number;
  readonly #clean: (error: unknown) => Error;
  #serving = 0;
  #closed = false;

  /**
   * `maxReplyBytes`: the bus's publish limit, which a reply is held to as well. `clean`: what the bus does to an
   * error before a caller sees it (credentials out of native errors).
   */
  constructor(
    rr: RequestReply | undefined,
    system: string,
    logger: Logger,
    maxReplyBytes: number,
    clean: (error: unknown) => Error,
  ) {
    this.#rr = rr;
    this.#system = system;
    this.#logger = logger;
    this.#maxReplyBytes = maxReplyBytes;
    this.#clean = clean;
  }

  #transport(): RequestReply {
    if (!this.#rr) throw new UnsupportedError(`The ${this.#system} transport does not offer request/reply`);
    if (this.#closed) throw new ClosedError('The bus is closed: request rejected');
    return this.#rr;
  }

  /**
   * One promise per request beside the driver's, and no async frame: the driver bounds the wait (timeout,
   * abort, its own close: PendingReplies, held to it by the conformance suite); this one only lets the bus's
   * close() reject it at once. (Three async layers here and in the bus were a visible share of a round trip.)
   */
  request<T, R>(def: Topic<T, R>, record: OutgoingRecord, options: RequestOptions): Promise<R> {
    let rr: RequestReply;
    try {
      rr = this.#transport();
    } catch (error) {
      return Promise.reject(error);
    }
    const timeoutMs = options.timeoutMs ?? 5_000;
    const sendOptions = options.signal ? { timeoutMs, signal: options.signal } : { timeoutMs };
    return new Promise<R>((resolve, reject) => {
      const fail = (error: unknown): void => {
        this.#pending.delete(fail);
        reject(this.#clean(requestFailure(error)));
      };
      this.#pending.add(fail);
      let replied: Promise<ReplyRecord>;
      try {
        replied = rr.request(record, sendOptions);
      } catch (error) {
        fail(error);
        return;
      }
      replied.then((reply) => {
        // Gone from the set: the bus closed meanwhile and the caller has its ClosedError.
        if (!this.#pending.delete(fail)) return;
        let value: R | Promise<R>;
        try {
          value = replyValue(def, reply);
        } catch (error) {
          reject(this.#clean(error));
          return;
        }
        if (value instanceof Promise) value.then(resolve, (error: unknown) => reject(this.#clean(error)));
        else resolve(value);
      }, fail);
    });
  }

  async respond<T, R>(
    def: Topic<T, R>,
    handler: Responder<T, R>,
    options: ResolvedRespondOptions,
  ): Promise<TransportSubscription> {
    const rr = this.#transport();
    const server = new RequestServer(def, handler, options, this.#logger, this.#maxReplyBytes, () => this.#serving--);
    const native = await rr.respond(
      { topic: def.name, group: options.group, prefetch: Math.max(100, options.concurrency * 2) },
      {
        onRequest: (request) => {
          this.#serving++;
          server.take(request);
        },
        onError: (error) => this.#logger.error(`Responder on '${def.name}' failed`, { error }),
      },
    );
    // A handler still running at close keeps no timer behind: the process must be free to exit.
    return {
      stop: () => native.stop(),
      close: () => native.close().finally(() => server.close()),
    };
  }

  /** How many requests this bus waits for, how many its responders hold (queued or running), late replies dropped. */
  diagnostics(): { pendingRequests: number; servingRequests: number; lateReplies: number } {
    return {
      pendingRequests: this.#pending.size,
      servingRequests: this.#serving,
      lateReplies: this.#rr?.lateReplies?.() ?? 0,
    };
  }

  /** Every pending request rejects with ClosedError; nothing waits any more. */
  close(): void {
    this.#closed = true;
    for (const fail of this.#pending) fail(new ClosedError('The bus closed while the request waited for its reply'));
    this.#pending.clear();
  }
}
