import { Deque } from '../transport/deque.js';
import type { Delivery } from '../transport/spi.js';

/**
 * Deliveries waiting for a handler slot, and the keys being handled: with concurrency > 1, messages of one
 * key still run one after another (per-key order), while other keys overtake a busy one.
 */
export class KeyedQueue {
  readonly #waiting = new Deque<Delivery>();
  readonly #busy = new Set<string>();
  readonly #perKey: boolean;

  /** `perKey`: hold a message while another of its key runs (with concurrency 1 it never could). */
  constructor(perKey: boolean) {
    this.#perKey = perKey;
  }

  get length(): number {
    return this.#waiting.length;
  }

  push(d: Delivery): void {
    this.#waiting.push(d);
  }

  /** The oldest delivery that may start now (its key is not being handled), marked as started; or undefined. */
  take(): Delivery | undefined {
    let d: Delivery | undefined;
    if (this.#busy.size === 0) d = this.#waiting.shift();
    else {
      for (let i = 0; i < this.#waiting.length; i++) {
        const key = (this.#waiting.at(i) as Delivery).key;
        if (key === undefined || !this.#busy.has(key)) {
          d = this.#waiting.removeAt(i);
          break;
        }
      }
    }
    if (d !== undefined && this.#perKey && d.key !== undefined) this.#busy.add(d.key);
    return d;
  }

  /** Its handler is done: the next message of its key may start. */
  done(d: Delivery): void {
    if (this.#perKey && d.key !== undefined) this.#busy.delete(d.key);
  }

  /** Removes every waiting delivery (close releases them). */
  drain(): Delivery[] {
    return this.#waiting.drain();
  }
}
