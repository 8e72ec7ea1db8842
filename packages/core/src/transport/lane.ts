import { MAX_TIMER_MS } from '../options.js';
import { Deque } from './deque.js';

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
    if (this.#timer === undefined) this.#arm();
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
