import { randomBytes } from 'node:crypto';
import { AbortedError, ClosedError, TimeoutError } from '../errors.js';
import { TimeoutLane } from './lane.js';
import type { ReplyRecord } from './spi.js';

interface Entry<M> {
  readonly id: string;
  readonly topic: string;
  readonly meta: M;
  /** When it times out, by Date.now(). */
  readonly deadline: number;
  resolve: (reply: ReplyRecord) => void;
  reject: (error: Error) => void;
  readonly lane: TimeoutLane<Entry<M>>;
  signal: AbortSignal | undefined;
  onAbort: (() => void) | undefined;
  settled: boolean;
}

const ignore = (): void => {};

/**
 * A driver's table of requests waiting for their reply: each one settles exactly once (reply, timeout, abort,
 * failure or close), and then leaves no timer, listener or entry behind, so a late reply finds nothing and is
 * dropped. `meta` is what the driver needs to know about a pending request (its subject, its channel).
 *
 * Timeouts: requests with the same `timeoutMs` time out in the order they were sent: one `TimeoutLane` (one
 * timer) per timeout value, not a timer per request.
 */
export class PendingReplies<M = undefined> {
  readonly #transport: string;
  readonly #entries = new Map<string, Entry<M>>();
  readonly #lanes = new Map<number, TimeoutLane<Entry<M>>>();
  #closed = false;
  #late = 0;
  /**
   * Correlation ids: a random prefix per table (72 bits, so tables sharing a reply topic or queue do not
   * collide) and a sequence number. A UUID per request allocated about 0.6 KB of strings (bench profile).
   */
  readonly #prefix = randomBytes(9).toString('base64url');
  #seq = 0;

  /** `transport` names the driver in errors: `The Kafka transport is closed`. */
  constructor(transport: string) {
    this.#transport = transport;
  }

  /** A correlation id unique among every table's requests: `<random prefix>.<sequence>`. */
  nextId(): string {
    return `${this.#prefix}.${++this.#seq}`;
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
    send: () => unknown,
    toError: (error: unknown) => Error = (error) => error as Error,
  ): Promise<ReplyRecord> {
    if (this.#closed)
      return Promise.reject(new ClosedError(`The ${this.#transport} transport is closed: request rejected`));
    const { signal, timeoutMs } = options;
    if (signal?.aborted) {
      return Promise.reject(new AbortedError(`Request on '${topic}' aborted`, { cause: signal.reason }));
    }
    return new Promise<ReplyRecord>((resolve, reject) => {
      const lane = this.#lane(timeoutMs);
      const entry: Entry<M> = {
        id,
        topic,
        meta,
        deadline: lane.deadline(),
        resolve,
        reject,
        lane,
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
      lane.add(entry);
      try {
        // What `send` returns is only looked at as a promise whose rejection fails the request.
        const sent = send() as PromiseLike<unknown> | undefined;
        if (typeof sent?.then === 'function') {
          sent.then(undefined, (error: unknown) => this.#settle(entry)?.reject(toError(error)));
        }
      } catch (error) {
        this.#settle(entry)?.reject(toError(error));
      }
    });
  }

  /** Marks `entry` settled and removes what it held; its callbacks, or undefined when it was settled already. */
  #settle(entry: Entry<M>): Pick<Entry<M>, 'resolve' | 'reject'> | undefined {
    if (entry.settled) return undefined;
    entry.settled = true;
    this.#entries.delete(entry.id);
    if (entry.onAbort) entry.signal?.removeEventListener('abort', entry.onAbort);
    entry.lane.settled(entry);
    const { resolve, reject } = entry;
    // Its lane may keep it behind an older request until that one times out: the callbacks hold the settled
    // promise, and with it the reply, that long.
    entry.resolve = ignore;
    entry.reject = ignore;
    entry.signal = undefined;
    entry.onAbort = undefined;
    return { resolve, reject };
  }

  #lane(timeoutMs: number): TimeoutLane<Entry<M>> {
    let lane = this.#lanes.get(timeoutMs);
    if (lane === undefined) {
      const created = new TimeoutLane<Entry<M>>(
        timeoutMs,
        (entry) =>
          this.#settle(entry)?.reject(
            new TimeoutError(`No reply on '${entry.topic}' within ${timeoutMs} ms`, { retryable: false }),
          ),
        () => {
          if (this.#lanes.get(timeoutMs) === created) this.#lanes.delete(timeoutMs);
        },
      );
      lane = created;
      this.#lanes.set(timeoutMs, lane);
    }
    return lane;
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
    for (const lane of [...this.#lanes.values()]) lane.clear();
  }

  /** Timers armed (one per timeout value with a request waiting): tests check that nothing is left behind. */
  get timers(): number {
    let armed = 0;
    for (const lane of this.#lanes.values()) if (lane.armed) armed++;
    return armed;
  }
}
