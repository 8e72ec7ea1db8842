import { type Codec, jsonCodec } from './codec.js';
import {
  BusbarError,
  ClosedError,
  ConfigError,
  HandlerTimeoutError,
  PayloadTooLargeError,
  RemoteError,
  SerializationError,
  TimeoutError,
  UnsupportedError,
  type ValidationError,
} from './errors.js';
import type { IdempotencyStore } from './idempotency.js';
import { decodeInbound } from './inbound.js';
import type { Logger } from './logger.js';
import type { HandlerContext, Message } from './message.js';
import { type IdempotencyOptions, MAX_TIMER_MS, type ResolvedRespondOptions } from './options.js';
import { validate } from './schema.js';
import { signalOf } from './signal.js';
import type { Subscription } from './subscription/index.js';
import { toFailure } from './thrown.js';
import type { Topic } from './topic.js';
import { HEADER } from './transport/headers.js';
import { TimeoutLane } from './transport/lane.js';
import type {
  IncomingRequest,
  OutgoingRecord,
  ReplyRecord,
  RequestReply,
  TransportSubscription,
} from './transport/spi.js';

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

const MAX_REMOTE_MESSAGE = 1_000;

/** Checks what `bus.request` takes beside the payload (JavaScript callers pass anything); returns its signal. */
export function checkRequestOptions(options: RequestOptions): AbortSignal | undefined {
  const signal = signalOf(options, 'request options');
  const { timeoutMs } = options;
  if (timeoutMs !== undefined && (!Number.isInteger(timeoutMs) || timeoutMs <= 0 || timeoutMs > MAX_TIMER_MS)) {
    throw new ConfigError(`Invalid request options: timeoutMs must be a positive integer of at most ${MAX_TIMER_MS}`);
  }
  return signal;
}

/** The reply's bytes: JSON of the handler's result, validated against the topic's response schema when it has one. */
function encodeReply<R>(def: Topic<unknown, R>, value: unknown): ReplyRecord {
  const checked = def.response ? validate(def.response, value, `Reply on '${def.name}'`) : value;
  if (checked instanceof Promise) throw new SerializationError('Asynchronous response schemas are not supported');
  // A responder that returns nothing (a command: "do this, tell me when it is done") answers JSON null. As
  // `undefined` it failed to encode, and its caller got a RemoteError for work that had been done.
  return {
    body: jsonCodec.encode(checked === undefined ? null : checked),
    contentType: jsonCodec.contentType,
    headers: {},
  };
}

function errorReply(error: Error, exposeStack: boolean): ReplyRecord {
  const code = BusbarError.is(error) ? error.code : error.name || 'Error';
  const text =
    error.message.length > MAX_REMOTE_MESSAGE ? `${error.message.slice(0, MAX_REMOTE_MESSAGE)}...` : error.message;
  // Headers must be portable text: one line, no control characters.
  // biome-ignore lint/suspicious/noControlCharactersInRegex: these are the characters being replaced
  const oneLine = (exposeStack && error.stack ? error.stack : text).replace(/[\u0000-\u001f\u007f-\u009f]+/g, ' ');
  return {
    body: new Uint8Array(0),
    contentType: undefined,
    headers: {
      [HEADER.replyError]: code.replace(/[^A-Za-z0-9_.-]/g, '_').slice(0, 100),
      [HEADER.replyErrorMessage]: oneLine,
    },
  };
}

/** The handler's context; its AbortController is made only if the handler reads `signal` (most never do). */
class RequestContext implements HandlerContext {
  readonly idempotencyKey: string | undefined;
  #controller: AbortController | undefined;
  #reason: unknown;
  #aborted = false;
  constructor(idempotencyKey: string | undefined) {
    this.idempotencyKey = idempotencyKey;
  }
  get signal(): AbortSignal {
    if (this.#controller === undefined) {
      this.#controller = new AbortController();
      if (this.#aborted) this.#controller.abort(this.#reason);
    }
    return this.#controller.signal;
  }
  abort(reason: unknown): void {
    this.#aborted = true;
    this.#reason = reason;
    this.#controller?.abort(reason);
  }
}

function isThenable<R>(value: R | PromiseLike<R>): value is PromiseLike<R> {
  return typeof (value as { then?: unknown } | null | undefined)?.then === 'function';
}

/** A running asynchronous handler in its responder's timeout lane. */
interface HandlerRun {
  readonly deadline: number;
  settled: boolean;
  readonly expire: () => void;
}

/**
 * The handler, bounded by the responder's handler timeout (its signal aborted then). A synchronous result
 * needs no timer; an asynchronous one joins the responder's one timeout lane (no timer per request).
 */
function run<T, R>(
  handler: Responder<T, R>,
  message: Message<T>,
  context: RequestContext,
  lane: TimeoutLane<HandlerRun>,
): R | Promise<R> {
  const result = handler(message, context);
  if (!isThenable(result)) return result;
  return new Promise<R>((resolve, reject) => {
    const item: HandlerRun = {
      deadline: lane.deadline(),
      settled: false,
      expire: () => {
        item.settled = true;
        const error = new HandlerTimeoutError(lane.timeoutMs);
        context.abort(error);
        reject(error);
      },
    };
    lane.add(item);
    const settle = (): boolean => {
      if (item.settled) return false;
      item.settled = true;
      lane.settled(item);
      return true;
    };
    result.then(
      (value) => settle() && resolve(value),
      (error: unknown) => settle() && reject(error),
    );
  });
}

/**
 * Request/reply over the transport's native mechanism. Requests do not go through retry or dead letters (the
 * caller is waiting): a responder failure becomes a typed RemoteError for the caller, and the caller decides.
 */
export class Requests {
  readonly #rr: RequestReply | undefined;
  readonly #system: string;
  readonly #logger: Logger;
  readonly #pending = new Set<(error: Error) => void>();
  readonly #maxReplyBytes: number;
  #serving = 0;
  #closed = false;

  /** `maxReplyBytes`: the bus's publish limit, which a reply is held to as well. */
  constructor(rr: RequestReply | undefined, system: string, logger: Logger, maxReplyBytes: number) {
    this.#rr = rr;
    this.#system = system;
    this.#logger = logger;
    this.#maxReplyBytes = maxReplyBytes;
  }

  #transport(): RequestReply {
    if (!this.#rr) throw new UnsupportedError(`The ${this.#system} transport does not offer request/reply`);
    if (this.#closed) throw new ClosedError('The bus is closed: request rejected');
    return this.#rr;
  }

  async request<T, R>(def: Topic<T, R>, record: OutgoingRecord, options: RequestOptions): Promise<R> {
    const rr = this.#transport();
    const timeoutMs = options.timeoutMs ?? 5_000;
    const sendOptions = options.signal ? { timeoutMs, signal: options.signal } : { timeoutMs };
    let fail!: (error: Error) => void;
    let reply: ReplyRecord;
    try {
      // One promise per request: the driver bounds the wait (timeout, abort, its own close: PendingReplies, held to
      // it by the conformance suite); this one only lets the bus's close() reject it at once.
      reply = await new Promise<ReplyRecord>((resolve, reject) => {
        fail = reject;
        this.#pending.add(reject);
        rr.request(record, sendOptions).then(resolve, reject);
      });
    } catch (error) {
      // A timed-out request may still be answered: the outcome is unknown, so it is not retried for the caller.
      if (BusbarError.is(error, 'BUSBAR_TIMEOUT') && error.retryable) {
        throw new TimeoutError(error.message, { retryable: false, cause: error.cause });
      }
      throw error;
    } finally {
      this.#pending.delete(fail);
    }
    const code = reply.headers[HEADER.replyError];
    if (code !== undefined)
      throw new RemoteError(code, reply.headers[HEADER.replyErrorMessage] ?? 'the responder failed');
    const { payload } = decodeInbound(jsonCodec as Codec<unknown>, reply.body, reply.contentType, reply.headers);
    if (!def.response) return payload as R;
    const valid = validate(def.response, payload, `Reply on '${def.name}'`);
    return valid instanceof Promise ? await valid : valid;
  }

  async respond<T, R>(
    def: Topic<T, R>,
    handler: Responder<T, R>,
    options: ResolvedRespondOptions,
  ): Promise<TransportSubscription> {
    const rr = this.#transport();
    const lane = new TimeoutLane<HandlerRun>(options.handlerTimeoutMs, (r) => r.expire());
    const waiting: IncomingRequest[] = [];
    let running = 0;
    const serve = async (request: IncomingRequest): Promise<void> => {
      let reply: ReplyRecord;
      try {
        reply = encodeReply(def, await this.#answer(def, handler, request, options, lane));
        // Sent as it is, a reply over the limit closes the responder's channel or connection on some brokers
        // (or the client refuses it), and its caller would only learn of it at its timeout.
        const size = reply.body.byteLength;
        if (size > this.#maxReplyBytes)
          throw new PayloadTooLargeError(size, this.#maxReplyBytes, `${def.name} (reply)`);
      } catch (thrown) {
        const error = toFailure(thrown);
        if (BusbarError.is(error, 'BUSBAR_VALIDATION') && (error as ValidationError).message.startsWith('Reply on')) {
          this.#logger.error(`The responder on '${def.name}' returned a reply that fails its schema`, { error });
        }
        reply = errorReply(error, options.exposeStack);
      }
      await request
        .reply(reply)
        .catch((error: unknown) => this.#logger.warn(`Replying on '${def.name}' failed`, { error: toFailure(error) }));
    };
    const pump = (): void => {
      while (running < options.concurrency && waiting.length > 0) {
        const next = waiting.shift() as IncomingRequest;
        running++;
        void serve(next).finally(() => {
          running--;
          this.#serving--;
          pump();
        });
      }
    };
    return rr.respond(
      { topic: def.name, group: options.group, prefetch: Math.max(100, options.concurrency * 2) },
      {
        onRequest: (request) => {
          this.#serving++;
          waiting.push(request);
          pump();
        },
        onError: (error) => this.#logger.error(`Responder on '${def.name}' failed`, { error }),
      },
    );
  }

  async #answer<T, R>(
    def: Topic<T, R>,
    handler: Responder<T, R>,
    request: IncomingRequest,
    options: ResolvedRespondOptions,
    lane: TimeoutLane<HandlerRun>,
  ): Promise<R> {
    const { payload, cloudEvent } = decodeInbound(
      def.codec as Codec<unknown>,
      request.body,
      request.contentType,
      request.headers,
    );
    const schema = def.schema;
    const value = schema ? await validate(schema, payload, `Request ${request.id} on '${def.name}'`) : (payload as T);
    const message: Message<T> = {
      id: cloudEvent?.id ?? request.id,
      topic: request.topic,
      key: undefined,
      payload: value,
      headers: request.headers,
      timestamp: new Date(request.timestamp),
      attempt: 1,
      deadLetter: undefined,
      contentType: request.contentType,
      cloudEvent,
      raw: request.raw,
    };
    const idempotency = options.idempotency;
    if (!idempotency) return run(handler, message, new RequestContext(undefined), lane);
    const key = `${options.group}:${message.id}`;
    const leaseMs = idempotency.leaseMs ?? options.handlerTimeoutMs + 5_000;
    const claimed = await idempotency.store.claim(key, leaseMs).catch((error: unknown) => {
      this.#logger.error(`The idempotency store of the responder on '${def.name}' failed`, { error: toFailure(error) });
      // The store's own message may describe its connection: the caller only learns that it failed.
      const code = BusbarError.is(error) ? error.code : 'BUSBAR_CONNECTION';
      throw new BusbarError(code, 'The responder could not check the request id: its handler did not run');
    });
    if (claimed !== 'claimed') {
      const state = claimed === 'done' ? 'was already answered' : 'is being answered';
      throw new BusbarError('BUSBAR_DUPLICATE', `Request ${message.id} ${state}: the handler does not run twice`);
    }
    const reply = await this.#once(idempotency.store, key, () => run(handler, message, new RequestContext(key), lane));
    await idempotency.store
      .complete(key, idempotency.ttlMs)
      .catch((error: unknown) => this.#logger.warn('idempotency complete failed', { error: toFailure(error) }));
    return reply;
  }

  /** Runs a claimed handler; a failure releases the claim so the caller may ask again. */
  async #once<R>(store: IdempotencyStore, key: string, call: () => R | Promise<R>): Promise<R> {
    try {
      return await call();
    } catch (error) {
      // A timed-out handler may still be running: its claim stays until the lease lapses, so no second run beside it.
      if (!BusbarError.is(error, 'BUSBAR_HANDLER_TIMEOUT')) {
        await store
          .release(key)
          .catch((e: unknown) => this.#logger.warn('idempotency release failed', { error: toFailure(e) }));
      }
      throw error;
    }
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

/** What `bus.respond` returns: closing it stops the native responder. */
export function responderHandle(
  topic: string,
  group: string | undefined,
  native: TransportSubscription,
  forget: (handle: Subscription) => void,
): Subscription {
  let closed = false;
  const handle: Subscription = {
    topic,
    group,
    get closed() {
      return closed;
    },
    async close() {
      if (closed) return;
      closed = true;
      forget(handle);
      await native.stop();
      await native.close();
    },
    [Symbol.asyncDispose]() {
      return handle.close();
    },
  };
  return handle;
}
