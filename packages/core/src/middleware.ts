import { BusbarError, ClosedError, ConfigError, PublishError } from './errors.js';
import type { Handler, HandlerContext, Message } from './message.js';
import { checkPublishOptions, PUBLISH_OPTION_KEYS, type PublishOptions } from './publish.js';
import { toFailure } from './thrown.js';
import { abortable } from './transport/util.js';

/**
 * Wraps every handler of a bus (`bus.use`) or of one subscription (`middleware` option), Koa-style:
 * `await next()` runs the rest of the chain and the handler. It runs inside the retry and dead-letter decision:
 * a middleware that throws fails the message like a handler that throws (`PermanentError` to dead-letter it at
 * once). Observe with diagnostics channels; change behaviour with middleware.
 */
export type ConsumeMiddleware = (
  message: Message<unknown>,
  context: HandlerContext,
  next: () => Promise<void>,
) => unknown;

/** A message on its way out, before it is validated and encoded: publish middleware may change these. */
export interface OutgoingMessage {
  readonly topic: string;
  readonly payload: unknown;
  /** The headers to send; add, change or delete entries (the usual header rules apply after the chain). */
  headers: Record<string, string>;
  key: string | undefined;
  id: string | undefined;
}

/** Runs before each message is published (in `publish` and for each entry of `publishBatch`); throw to reject it. */
export type PublishMiddleware = (message: OutgoingMessage) => void | Promise<void>;

export interface Middleware {
  readonly consume?: ConsumeMiddleware;
  readonly publish?: PublishMiddleware;
}

/**
 * The handler wrapped by `chain` (first = outermost). The handler's own return value comes out unchanged
 * (core's internal handlers return markers through it). No chain: the handler itself, at no cost.
 */
export function composeConsume<T>(chain: readonly ConsumeMiddleware[], handler: Handler<T>): Handler<T> {
  if (chain.length === 0) return handler;
  return async (message, context) => {
    let result: unknown;
    const run = async (index: number): Promise<void> => {
      if (index === chain.length) {
        result = await handler(message, context);
        return;
      }
      // 0: next() not called yet, 1: called, 2: the middleware is done (a later next() must not run the handler
      // after the message was settled).
      let state = 0;
      let misuse: ConfigError | undefined;
      const next = (): Promise<void> => {
        if (state === 0) {
          state = 1;
          return run(index + 1);
        }
        const error = new ConfigError(
          state === 1 ? 'next() called twice by one middleware' : 'next() called after its middleware finished',
        );
        if (state === 1) misuse ??= error;
        // Handled here as well: a middleware that does not await the second call must not crash the process.
        const rejected = Promise.reject(error);
        rejected.catch(() => undefined);
        return rejected;
      };
      try {
        await (chain[index] as ConsumeMiddleware)(message as Message<unknown>, context, next);
      } finally {
        state = 2;
      }
      if (misuse) throw misuse;
    };
    await run(0);
    return result;
  };
}

/** Runs the publish chain over `message`; a non-busbar throw becomes a non-retryable PublishError. */
export async function runPublishMiddleware(
  chain: readonly PublishMiddleware[],
  message: OutgoingMessage,
): Promise<void> {
  for (const middleware of chain) {
    try {
      await middleware(message);
    } catch (error) {
      if (BusbarError.is(error)) throw error;
      const failure = toFailure(error);
      throw new PublishError(`A publish middleware rejected the message for '${message.topic}': ${failure.message}`, {
        cause: failure,
        retryable: false,
      });
    }
  }
}

/** A bus's middleware, in registration order. */
export class MiddlewareChains {
  readonly consume: ConsumeMiddleware[] = [];
  readonly publish: PublishMiddleware[] = [];

  use(middleware: Middleware | ConsumeMiddleware): void {
    try {
      this.#use(middleware);
    } catch (error) {
      // A Proxy or a getter that throws is a bad middleware too.
      if (BusbarError.is(error)) throw error;
      throw new ConfigError(`Invalid middleware: reading it threw (${toFailure(error).message})`);
    }
  }

  #use(middleware: Middleware | ConsumeMiddleware): void {
    const m = typeof middleware === 'function' ? { consume: middleware } : middleware;
    if (typeof m !== 'object' || m === null) throw new ConfigError('use() needs a middleware: { consume?, publish? }');
    for (const key of Object.keys(m)) {
      if (key !== 'consume' && key !== 'publish') throw new ConfigError(`Invalid middleware: unknown key '${key}'`);
    }
    if (m.consume !== undefined && typeof m.consume !== 'function') {
      throw new ConfigError('Invalid middleware: consume must be a function');
    }
    if (m.publish !== undefined && typeof m.publish !== 'function') {
      throw new ConfigError('Invalid middleware: publish must be a function');
    }
    if (m.consume) this.consume.push(m.consume);
    if (m.publish) this.publish.push(m.publish);
  }

  /**
   * Runs the publish middleware over one message; returns the options it left. Bounded by `signal` and by the
   * bus's close: a middleware that never settles must not hold its publish for good.
   */
  async intercept<O extends PublishOptions>(
    topic: string,
    payload: unknown,
    options: O | undefined,
    keys: ReadonlySet<string> = PUBLISH_OPTION_KEYS,
    signal: AbortSignal | undefined = options?.signal,
  ): Promise<O> {
    if (options !== undefined) checkPublishOptions(options, keys);
    const message: OutgoingMessage = {
      topic,
      payload,
      headers: { ...(options?.headers as Record<string, string> | undefined) },
      key: options?.key,
      id: options?.id,
    };
    await this.#bounded(runPublishMiddleware(this.publish, message), signal);
    const out = { ...options, headers: message.headers } as O;
    if (message.key === undefined) delete out.key;
    else out.key = message.key;
    if (message.id === undefined) delete out.id;
    else out.id = message.id;
    return out;
  }

  /** Publishes still in their middleware are rejected with ClosedError; later ones at once. */
  close(): void {
    this.#closed = true;
    for (const stop of this.#running)
      stop(new ClosedError('The bus closed while a publish middleware ran: nothing was sent'));
    this.#running.clear();
  }

  readonly #running = new Set<(error: Error) => void>();
  #closed = false;

  #bounded(work: Promise<void>, signal: AbortSignal | undefined): Promise<void> {
    if (this.#closed) return Promise.reject(new ClosedError('The bus is closed: publish rejected'));
    let stop!: (error: Error) => void;
    const closed = new Promise<never>((_, reject) => {
      stop = reject;
    });
    this.#running.add(stop);
    return abortable(
      Promise.race([work, closed]),
      signal,
      'Publish aborted in its middleware: nothing was sent',
    ).finally(() => this.#running.delete(stop));
  }
}
