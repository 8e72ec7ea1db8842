import { type Codec, jsonCodec } from './codec.js';
import { BusbarError, HandlerTimeoutError, PayloadTooLargeError, SerializationError } from './errors.js';
import type { IdempotencyStore } from './idempotency.js';
import { decodeInbound } from './inbound.js';
import type { Logger } from './logger.js';
import type { HandlerContext, Message } from './message.js';
import type { ResolvedRespondOptions } from './options.js';
import type { Responder } from './request.js';
import { validate } from './schema.js';
import type { Subscription } from './subscription/index.js';
import { toFailure } from './thrown.js';
import type { Topic } from './topic.js';
import { HEADER } from './transport/headers.js';
import { TimeoutLane } from './transport/lane.js';
import type { IncomingRequest, ReplyRecord, TransportSubscription } from './transport/spi.js';

const MAX_REMOTE_MESSAGE = 1_000;

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
  // Any Error reaches here, with whatever its fields hold (`e.message = body.error_description` can be undefined).
  const name = BusbarError.is(error) ? error.code : error.name;
  const code = typeof name === 'string' && name !== '' ? name : 'Error';
  const message = typeof error.message === 'string' ? error.message : 'the responder failed';
  const text = remoteMessage(message);
  const stack = exposeStack && typeof error.stack === 'string' ? error.stack : undefined;
  return {
    body: new Uint8Array(0),
    contentType: undefined,
    headers: { [HEADER.replyError]: remoteCode(code), [HEADER.replyErrorMessage]: oneLine(stack ?? text) },
  };
}

/** A remote error's code as it travels and as a caller reads it: at most 100 of `A-Za-z0-9_.-`. */
export function remoteCode(code: string): string {
  return code.replace(/[^A-Za-z0-9_.-]/g, '_').slice(0, 100) || 'Error';
}

/** A remote error's message as a caller gets it: one line, at most MAX_REMOTE_MESSAGE characters. */
export function remoteMessage(message: string): string {
  return oneLine(message.length > MAX_REMOTE_MESSAGE ? `${message.slice(0, MAX_REMOTE_MESSAGE)}...` : message);
}

/** Headers must be portable text: one line, no control characters, bounded. */
export function oneLine(text: string): string {
  const bounded = text.length > 4 * MAX_REMOTE_MESSAGE ? text.slice(0, 4 * MAX_REMOTE_MESSAGE) : text;
  // biome-ignore lint/suspicious/noControlCharactersInRegex: these are the characters being replaced
  return bounded.replace(/[\u0000-\u001f\u007f-\u009f]+/g, ' ');
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

const ignore = (): void => {};

/** A running asynchronous handler in its responder's timeout lane. */
interface HandlerRun {
  readonly deadline: number;
  settled: boolean;
  expire: () => void;
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
      // Its lane may keep it behind an older handler until that one times out: `expire` holds the request and,
      // through the settled promise, the handler's result, that long.
      item.expire = ignore;
      return true;
    };
    try {
      result.then(
        (value) => settle() && resolve(value),
        (error: unknown) => settle() && reject(error),
      );
    } catch (error) {
      // A thenable whose `then` throws: failed now, its lane item gone with it.
      if (settle()) reject(error);
    }
  });
}

/**
 * One responder's requests, from the driver's `onRequest` to the reply: at most `concurrency` handlers at once,
 * the rest queued in arrival order (the driver's prefetch bounds the queue). Each request's way is callbacks,
 * not async frames: a handler that answers at once costs no promise but the reply's own (async layers were a
 * visible share of a round trip's CPU in the bench profiles).
 */
export class RequestServer<T, R> {
  readonly #def: Topic<T, R>;
  readonly #handler: Responder<T, R>;
  readonly #options: ResolvedRespondOptions;
  readonly #logger: Logger;
  readonly #maxReplyBytes: number;
  readonly #served: () => void;
  readonly #lane: TimeoutLane<HandlerRun>;
  readonly #waiting: IncomingRequest[] = [];
  #running = 0;

  /** `served` is called once per request taken, when it has left this server (answered, failed, or not sent). */
  constructor(
    def: Topic<T, R>,
    handler: Responder<T, R>,
    options: ResolvedRespondOptions,
    logger: Logger,
    maxReplyBytes: number,
    served: () => void,
  ) {
    this.#def = def;
    this.#handler = handler;
    this.#options = options;
    this.#logger = logger;
    this.#maxReplyBytes = maxReplyBytes;
    this.#served = served;
    this.#lane = new TimeoutLane<HandlerRun>(options.handlerTimeoutMs, (r) => r.expire());
  }

  take(request: IncomingRequest): void {
    this.#waiting.push(request);
    this.#pump();
  }

  #pump(): void {
    while (this.#running < this.#options.concurrency && this.#waiting.length > 0) {
      const next = this.#waiting.shift() as IncomingRequest;
      this.#running++;
      this.#serve(next);
    }
  }

  #done = (): void => {
    this.#running--;
    this.#served();
    this.#pump();
  };

  #serve(request: IncomingRequest): void {
    let result: R | Promise<R>;
    try {
      result = this.#answer(request);
    } catch (thrown) {
      this.#failed(request, thrown);
      return;
    }
    if (result instanceof Promise) {
      result.then(
        (value) => this.#answered(request, value),
        (thrown: unknown) => this.#failed(request, thrown),
      );
    } else this.#answered(request, result);
  }

  #answered(request: IncomingRequest, value: R): void {
    let reply: ReplyRecord;
    try {
      reply = encodeReply(this.#def, value);
      // Sent as it is, a reply over the limit closes the responder's channel or connection on some brokers
      // (or the client refuses it), and its caller would only learn of it at its timeout.
      const size = reply.body.byteLength;
      if (size > this.#maxReplyBytes)
        throw new PayloadTooLargeError(size, this.#maxReplyBytes, `${this.#def.name} (reply)`);
    } catch (thrown) {
      this.#failed(request, thrown);
      return;
    }
    this.#send(request, reply);
  }

  #failed(request: IncomingRequest, thrown: unknown): void {
    const error = toFailure(thrown);
    let reply: ReplyRecord;
    try {
      if (BusbarError.is(error, 'BUSBAR_VALIDATION') && error.message.startsWith('Reply on')) {
        this.#logger.error(`The responder on '${this.#def.name}' returned a reply that fails its schema`, { error });
      }
      reply = errorReply(error, this.#options.exposeStack);
    } catch {
      // Never left without an answer (and its concurrency slot), whatever the error looks like.
      reply = errorReply(new Error('the responder failed'), false);
    }
    this.#send(request, reply);
  }

  /** The responder closed: a handler still running keeps no timer (its caller has its ClosedError or timeout). */
  close(): void {
    this.#lane.clear();
  }

  #send(request: IncomingRequest, reply: ReplyRecord): void {
    let sent: Promise<void>;
    try {
      sent = request.reply(reply);
    } catch (error) {
      this.#replyFailed(error);
      this.#done();
      return;
    }
    // Promise.resolve: a driver's reply that is not a native promise still gives its slot back.
    Promise.resolve(sent).then(this.#done, (error: unknown) => {
      try {
        this.#replyFailed(error);
      } finally {
        this.#done();
      }
    });
  }

  #replyFailed(error: unknown): void {
    this.#logger.warn(`Replying on '${this.#def.name}' failed`, { error: toFailure(error) });
  }

  /** The handler's result for a request: no promise unless the schema, the store or the handler makes one. */
  #answer(request: IncomingRequest): R | Promise<R> {
    const def = this.#def;
    const { payload, cloudEvent } = decodeInbound(
      def.codec as Codec<unknown>,
      request.body,
      request.contentType,
      request.headers,
    );
    const schema = def.schema;
    if (!schema) return this.#handle(request, payload as T, cloudEvent);
    const valid = validate(schema, payload, `Request ${request.id} on '${def.name}'`, this.#options.handlerTimeoutMs);
    if (valid instanceof Promise) return valid.then((value) => this.#handle(request, value, cloudEvent));
    return this.#handle(request, valid, cloudEvent);
  }

  #handle(request: IncomingRequest, value: T, cloudEvent: Message<T>['cloudEvent']): R | Promise<R> {
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
    const idempotency = this.#options.idempotency;
    if (!idempotency) return run(this.#handler, message, new RequestContext(undefined), this.#lane);
    return this.#handleOnce(message, idempotency);
  }

  async #handleOnce(message: Message<T>, idempotency: NonNullable<ResolvedRespondOptions['idempotency']>): Promise<R> {
    const options = this.#options;
    const key = `${options.group}:${message.id}`;
    const leaseMs = idempotency.leaseMs ?? options.handlerTimeoutMs + 5_000;
    const claimed = await idempotency.store.claim(key, leaseMs).catch((error: unknown) => {
      this.#logger.error(`The idempotency store of the responder on '${this.#def.name}' failed`, {
        error: toFailure(error),
      });
      // The store's own message may describe its connection: the caller only learns that it failed.
      const code = BusbarError.is(error) ? error.code : 'BUSBAR_CONNECTION';
      throw new BusbarError(code, 'The responder could not check the request id: its handler did not run');
    });
    if (claimed !== 'claimed') {
      const state = claimed === 'done' ? 'was already answered' : 'is being answered';
      throw new BusbarError('BUSBAR_DUPLICATE', `Request ${message.id} ${state}: the handler does not run twice`);
    }
    const reply = await this.#once(idempotency.store, key, () =>
      run(this.#handler, message, new RequestContext(key), this.#lane),
    );
    await idempotency.store
      .complete(key, idempotency.ttlMs)
      .catch((error: unknown) => this.#logger.warn('idempotency complete failed', { error: toFailure(error) }));
    return reply;
  }

  /** Runs a claimed handler; a failure releases the claim so the caller may ask again. */
  async #once(store: IdempotencyStore, key: string, call: () => R | Promise<R>): Promise<R> {
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
