import type { Message } from './message.js';
import { HOLD, type Subscription } from './subscription/index.js';

interface Waiting<T> {
  readonly message: Message<T>;
  /** Settles the handler behind the message: undefined acks, HOLD leaves it for release at close. */
  readonly settle: (outcome: undefined | typeof HOLD) => void;
}

/**
 * `for await (const message of bus.consume(topic, { group }))`: the subscription's handler hands each message
 * to the loop and waits; the message is acked when the loop asks for the next one (its body finished), so
 * retries, dead letters and idempotency work as with a handler. Leaving the loop (`break`, `return`, a throw)
 * releases the message in hand and every one not yet taken, unacked, and closes the subscription. The loop
 * body runs inside the handler timeout (`handlerTimeoutMs`).
 */
export class MessageStream<T> implements AsyncIterableIterator<Message<T>> {
  readonly #start: (handler: (message: Message<T>) => Promise<unknown>) => Promise<Subscription>;
  #subscription: Promise<Subscription> | undefined;
  readonly #ready: Waiting<T>[] = [];
  #takers: ((result: IteratorResult<Message<T>>) => void)[] = [];
  #inHand: Waiting<T> | undefined;
  #done = false;

  constructor(start: (handler: (message: Message<T>) => Promise<unknown>) => Promise<Subscription>) {
    this.#start = start;
  }

  [Symbol.asyncIterator](): this {
    return this;
  }

  async next(): Promise<IteratorResult<Message<T>>> {
    // Asking for the next message means the body finished with the one in hand: ack it.
    this.#inHand?.settle(undefined);
    this.#inHand = undefined;
    if (this.#done) return { done: true, value: undefined };
    this.#subscription ??= this.#start((message) => this.#offer(message));
    await this.#subscription;
    const ready = this.#ready.shift();
    if (ready) {
      this.#inHand = ready;
      return { done: false, value: ready.message };
    }
    return new Promise((resolve) => this.#takers.push(resolve));
  }

  async return(): Promise<IteratorResult<Message<T>>> {
    this.#done = true;
    this.#inHand?.settle(HOLD);
    this.#inHand = undefined;
    for (const waiting of this.#ready.splice(0)) waiting.settle(HOLD);
    for (const take of this.#takers.splice(0)) take({ done: true, value: undefined });
    if (this.#subscription) await (await this.#subscription).close();
    return { done: true, value: undefined };
  }

  #offer(message: Message<T>): Promise<unknown> {
    if (this.#done) return Promise.resolve(HOLD);
    return new Promise((settle) => {
      const waiting: Waiting<T> = { message, settle };
      const take = this.#takers.shift();
      if (take) {
        this.#inHand = waiting;
        take({ done: false, value: message });
      } else this.#ready.push(waiting);
    });
  }
}
