import { AbortedError, ClosedError, TimeoutError } from '../errors.js';
import { MAX_TIMER_MS } from '../options.js';
import { Deque } from './deque.js';
import type { ReplyRecord } from './spi.js';

interface Entry<M> {
  readonly id: string;
  readonly topic: string;
  readonly meta: M;
  /** When it times out, by Date.now(). */
  readonly deadline: number;
  readonly resolve: (reply: ReplyRecord) => void;
  readonly reject: (error: Error) => void;
  readonly lane: Lane<M>;
  signal: AbortSignal | undefined;
  onAbort: (() => void) | undefined;
  settled: boolean;
}

/** The requests of one timeout in the order they were opened, which is also their deadline order. */
interface Lane<M> {
  readonly timeoutMs: number;
  readonly entries: Deque<Entry<M>>;
  timer: ReturnType<typeof setTimeout> | undefined;
}

/**
 * A driver's table of requests waiting for their reply: each one settles exactly once (reply, timeout, abort,
 * failure or close), and then leaves no timer, listener or entry behind, so a late reply finds nothing and is
 * dropped. `meta` is what the driver needs to know about a pending request (its subject, its channel).
 *
 * Timeouts: requests with the same `timeoutMs` time out in the order they were sent, so each such "lane" has one
 * timer, armed for its oldest unsettled request, instead of one timer per request (a timer set and cleared per
 * round trip was a measurable part of request/reply CPU). Settled requests leave the front of their lane as soon
 * as they reach it, and a lane with nothing left unsettled has no timer.
 */
export class PendingReplies<M = undefined> {
  readonly #transport: string;
  readonly #entries = new Map<string, Entry<M>>();
  readonly #lanes = new Map<number, Lane<M>>();
  #closed = false;
  #late = 0;

  /** `transport` names the driver in errors: `The Kafka transport is closed`. */
  constructor(transport: string) {
    this.#transport = transport;
  }

  get size(): number {
    return this.#entries.size;
  }

  get closed(): boolean {
    return this.#closed;
  }

  /** Replies that found nobody waiting (late after a timeout or abort, or not ours), since the table was made. */
  get late(): number {
    return this.#late;
  }

  /**
   * Registers request `id` (unique among the pending ones) and calls `send`. The timeout is the one bound on
   * everything `send` starts (opening a reply channel, the write, the wait); a rejected `send` fails the request
   * with `toError`'s error. Rejected at once when the table is closed or `signal` has fired.
   */
  open(
    id: string,
    topic: string,
    options: { readonly timeoutMs: number; readonly signal?: AbortSignal | undefined },
    meta: M,
    send: () => Promise<void> | void,
    toError: (error: unknown) => Error = (error) => error as Error,
  ): Promise<ReplyRecord> {
    if (this.#closed)
      return Promise.reject(new ClosedError(`The ${this.#transport} transport is closed: request rejected`));
    const { signal, timeoutMs } = options;
    if (signal?.aborted) {
      return Promise.reject(new AbortedError(`Request on '${topic}' aborted`, { cause: signal.reason }));
    }
    return new Promise<ReplyRecord>((resolve, reject) => {
      const entry: Entry<M> = {
        id,
        topic,
        meta,
        deadline: Date.now() + timeoutMs,
        resolve,
        reject,
        lane: this.#lane(timeoutMs),
        signal: undefined,
        onAbort: undefined,
        settled: false,
      };
      if (signal) {
        entry.signal = signal;
        entry.onAbort = () =>
          this.#settle(entry)?.reject(new AbortedError(`Request on '${topic}' aborted`, { cause: signal.reason }));
        signal.addEventListener('abort', entry.onAbort, { once: true });
      }
      this.#entries.set(id, entry);
      this.#trim(entry.lane);
      entry.lane.entries.push(entry);
      if (entry.lane.timer === undefined) this.#arm(entry.lane);
      try {
        const sent = send();
        if (sent !== undefined) sent.catch((error: unknown) => this.#settle(entry)?.reject(toError(error)));
      } catch (error) {
        this.#settle(entry)?.reject(toError(error));
      }
    });
  }

  /** Marks `entry` settled and removes what it held; undefined when it was settled already. */
  #settle(entry: Entry<M>): Entry<M> | undefined {
    if (entry.settled) return undefined;
    entry.settled = true;
    this.#entries.delete(entry.id);
    if (entry.onAbort) entry.signal?.removeEventListener('abort', entry.onAbort);
    const lane = entry.lane;
    // Replies mostly come in order: the front settles first, and a lane left with nothing keeps no timer.
    if (lane.entries.at(0) === entry) {
      this.#trim(lane);
      if (lane.entries.length === 0 && lane.timer !== undefined) {
        clearTimeout(lane.timer);
        lane.timer = undefined;
        if (this.#lanes.get(lane.timeoutMs) === lane) this.#lanes.delete(lane.timeoutMs);
      }
    }
    return entry;
  }

  #lane(timeoutMs: number): Lane<M> {
    let lane = this.#lanes.get(timeoutMs);
    if (lane === undefined) {
      lane = { timeoutMs, entries: new Deque(), timer: undefined };
      this.#lanes.set(timeoutMs, lane);
    }
    return lane;
  }

  /** Drops the settled requests at the front of `lane`. */
  #trim(lane: Lane<M>): void {
    while (lane.entries.at(0)?.settled === true) lane.entries.shift();
  }

  /** Times out the lane's due requests, then waits for its oldest unsettled one (or forgets the lane). */
  #arm(lane: Lane<M>): void {
    this.#trim(lane);
    const front = lane.entries.at(0);
    if (front === undefined) {
      lane.timer = undefined;
      if (this.#lanes.get(lane.timeoutMs) === lane) this.#lanes.delete(lane.timeoutMs);
      return;
    }
    // One ms more: a timer may fire up to 1 ms early by Date.now(). Never over Node's limit: a longer one fires at once.
    const wait = Math.min(Math.max(0, front.deadline - Date.now()) + 1, MAX_TIMER_MS);
    lane.timer = setTimeout(() => this.#expire(lane), wait);
  }

  #expire(lane: Lane<M>): void {
    const now = Date.now();
    for (let front = lane.entries.at(0); front !== undefined && front.deadline <= now; front = lane.entries.at(0)) {
      lane.entries.shift();
      this.#settle(front)?.reject(
        new TimeoutError(`No reply on '${front.topic}' within ${lane.timeoutMs} ms`, { retryable: false }),
      );
    }
    this.#arm(lane);
  }

  /** The pending request's `meta`, or undefined when `id` waits no more. */
  meta(id: string): M | undefined {
    return this.#entries.get(id)?.meta;
  }

  /** Hands `reply` to request `id`; false when nobody waits for it (a late or a foreign reply). */
  resolve(id: string, reply: ReplyRecord): boolean {
    const entry = this.#entries.get(id);
    if (entry === undefined) {
      this.#late++;
      return false;
    }
    this.#settle(entry)?.resolve(reply);
    return true;
  }

  /** Counts a reply the driver recognised as for no pending request without calling `resolve` (see `late`). */
  dropLate(): void {
    this.#late++;
  }

  /** Fails request `id`; false when it was settled already. */
  reject(id: string, error: Error): boolean {
    const entry = this.#entries.get(id);
    if (entry === undefined) return false;
    this.#settle(entry)?.reject(error);
    return true;
  }

  /**
   * Fails every pending request `which` selects (all by default): a lost connection, a responder gone. `error`
   * may be a function of the request's topic, for a message that names it.
   */
  rejectAll(error: Error | ((topic: string) => Error), which?: (meta: M, topic: string) => boolean): void {
    for (const entry of [...this.#entries.values()]) {
      if (which !== undefined && !which(entry.meta, entry.topic)) continue;
      this.#settle(entry)?.reject(typeof error === 'function' ? error(entry.topic) : error);
    }
  }

  /** Fails every pending request with a ClosedError and refuses new ones. */
  close(): void {
    this.#closed = true;
    this.rejectAll(new ClosedError(`The ${this.#transport} transport closed before the reply came`));
    for (const lane of this.#lanes.values()) clearTimeout(lane.timer);
    this.#lanes.clear();
  }

  /** Timers armed (one per timeout value with a request waiting): tests check that nothing is left behind. */
  get timers(): number {
    let armed = 0;
    for (const lane of this.#lanes.values()) if (lane.timer !== undefined) armed++;
    return armed;
  }
}
