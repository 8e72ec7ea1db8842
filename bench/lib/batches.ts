import type { BatchShape } from './types.js';

/**
 * Groups the messages of a raw client without batch delivery into batches the way busbar's `subscribeBatch`
 * forms them: handed over at `maxSize`, or `maxWaitMs` after the first message of a partial batch.
 */
export class Batches<M> {
  readonly #shape: BatchShape;
  readonly #handOver: (messages: M[]) => void;
  #collected: M[] = [];
  #timer: NodeJS.Timeout | undefined;

  constructor(shape: BatchShape, handOver: (messages: M[]) => void) {
    this.#shape = shape;
    this.#handOver = handOver;
  }

  push(message: M): void {
    this.#collected.push(message);
    if (this.#collected.length >= this.#shape.maxSize) this.flush();
    else this.#timer ??= setTimeout(() => this.flush(), this.#shape.maxWaitMs);
  }

  /** Hands over what was collected now (also at close, so nothing stays unacked). */
  flush(): void {
    clearTimeout(this.#timer);
    this.#timer = undefined;
    const messages = this.#collected;
    if (messages.length === 0) return;
    this.#collected = [];
    this.#handOver(messages);
  }
}
