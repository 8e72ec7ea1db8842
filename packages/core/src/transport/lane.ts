import { MAX_TIMER_MS } from '../options.js';
import { Deque } from './deque.js';

/** Items a lane holds at which the settled ones among them are folded away (see #fold). */
const FOLD_AT = 4_096;

/** What a lane holds: something that times out at `deadline` (by Date.now()) unless settled first. */
export interface Timed {
  readonly deadline: number;
  readonly settled: boolean;
}

/**
 * Things that all time out after the same `timeoutMs`, kept in the order they were added, which is also their
 * deadline order: one timer for all of them, armed for the oldest unsettled one, instead of a timer set and
 * cleared per item (a measurable part of a request/reply round trip's CPU). Settled items leave the front as
 * soon as they reach it; a lane with nothing unsettled keeps no timer, so it holds no process open.
 */
export class TimeoutLane<E extends Timed> {
  readonly timeoutMs: number;
  readonly #items = new Deque<E>();
  readonly #onTimeout: (item: E) => void;
  readonly #onIdle: (() => void) | undefined;
  #timer: ReturnType<typeof setTimeout> | undefined;
  #foldAt = FOLD_AT;

  /** `onTimeout` is called for each unsettled item past its deadline; `onIdle` when the lane has none left. */
  constructor(timeoutMs: number, onTimeout: (item: E) => void, onIdle?: () => void) {
    this.timeoutMs = timeoutMs;
    this.#onTimeout = onTimeout;
    this.#onIdle = onIdle;
  }

  /** The deadline for an item added now. */
  deadline(): number {
    return Date.now() + this.timeoutMs;
  }

  add(item: E): void {
    this.#trim();
    this.#items.push(item);
    if (this.#items.length >= this.#foldAt) this.#fold();
    if (this.#timer === undefined) this.#arm();
  }

  /**
   * One item that stays unsettled at the front (a request nobody answers, a handler that never returns) kept
   * every item added after it, settled or not, until its own timeout: at 1,000 requests a second behind one with
   * a 10 min timeout, 600,000 of them, each with whatever its owner left in it. Settled items go once they are as
   * many as the rest: what is kept stays within FOLD_AT or twice what is unsettled, at a constant cost per item.
   * The front is unsettled (trimmed), so its timer stands.
   */
  #fold(): void {
    for (const item of this.#items.drain()) if (!item.settled) this.#items.push(item);
    this.#foldAt = Math.max(FOLD_AT, 2 * this.#items.length);
  }

  /** Call after `item` settled: the lane lets go of it (and of its timer, when nothing is left). */
  settled(item: E): void {
    if (this.#items.at(0) !== item) return;
    this.#trim();
    if (this.#items.length === 0) this.clear();
  }

  get armed(): boolean {
    return this.#timer !== undefined;
  }

  /** Stops the timer and forgets every item (their owner settles them). */
  clear(): void {
    clearTimeout(this.#timer);
    this.#timer = undefined;
    this.#items.drain();
    this.#onIdle?.();
  }

  #trim(): void {
    while (this.#items.at(0)?.settled === true) this.#items.shift();
  }

  #arm(): void {
    this.#trim();
    const front = this.#items.at(0);
    if (front === undefined) {
      this.clear();
      return;
    }
    // One ms more: a timer may fire up to 1 ms early by Date.now(). Never over Node's limit: a longer one fires at once.
    const wait = Math.min(Math.max(0, front.deadline - Date.now()) + 1, MAX_TIMER_MS);
    this.#timer = setTimeout(() => this.#expire(), wait);
  }

  #expire(): void {
    this.#timer = undefined;
    const now = Date.now();
    // Re-armed whatever a callback does: a throw must not leave the rest of the lane without a timeout.
    try {
      for (let front = this.#items.at(0); front !== undefined && front.deadline <= now; front = this.#items.at(0)) {
        this.#items.shift();
        if (!front.settled) this.#onTimeout(front);
      }
    } finally {
      this.#arm();
    }
  }
}
