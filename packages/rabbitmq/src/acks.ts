import { ConnectionError } from '@busbar/core';
import { type Deferred, Deque, deferred } from '@busbar/core/transport';
import type { Channel } from 'amqplib';
import { byTag } from './internals.js';

export const stale = (): ConnectionError =>
  new ConnectionError('The channel this message came on is closed: the broker redelivers it');

/**
 * Settlement of one consumer channel's deliveries. Acks are coalesced per
 * event-loop turn: the run of settled deliveries at the front of the
 * delivery order goes out as one `multiple` ack, the rest one by one. Tags
 * belong to this channel only: once it is closed every settle fails (the
 * broker has requeued its unacked messages), never reaching a newer channel.
 */
export class ChannelAcks {
  readonly channel: Channel;
  #alive = true;
  /** Delivery tags in delivery order, from the oldest not yet covered by an ack. */
  readonly #order = new Deque<number>();
  readonly #settled = new Set<number>();
  #pending: number[] = [];
  #batch: Deferred<void> | undefined;

  constructor(channel: Channel) {
    this.channel = channel;
  }

  get alive(): boolean {
    return this.#alive;
  }

  delivered(tag: number): void {
    this.#order.push(tag);
  }

  ack(tag: number): Promise<void> {
    if (!this.#alive) return Promise.reject(stale());
    this.#pending.push(tag);
    if (!this.#batch) {
      this.#batch = deferred();
      setImmediate(() => this.flush());
    }
    return this.#batch.promise;
  }

  /** Requeue (`release`) or drop one delivery; immediate, not coalesced. */
  nack(tag: number, requeue: boolean): void {
    if (!this.#alive) throw stale();
    this.channel.nack(byTag(tag), false, requeue);
    this.#settled.add(tag);
  }

  flush(): void {
    const batch = this.#batch;
    if (!batch) return;
    this.#batch = undefined;
    const pending = this.#pending;
    this.#pending = [];
    if (!this.#alive) {
      batch.reject(stale());
      return;
    }
    try {
      const acking = new Set(pending);
      let upTo = -1;
      for (let tag = this.#order.at(0); tag !== undefined; tag = this.#order.at(0)) {
        if (acking.delete(tag)) upTo = tag;
        else if (!this.#settled.delete(tag)) break;
        this.#order.shift();
      }
      // `multiple` must name a tag that is still unacked, or the broker closes the channel.
      if (upTo >= 0) this.channel.ack(byTag(upTo), true);
      for (const tag of acking) {
        this.channel.ack(byTag(tag), false);
        this.#settled.add(tag);
      }
      batch.resolve();
    } catch {
      this.#alive = false;
      batch.reject(stale());
    }
  }

  /** The channel closed: pending and later settles fail. */
  dead(): void {
    this.#alive = false;
    this.flush();
  }

  /** Sends what is pending now (before closing the channel). */
  async drain(): Promise<void> {
    const batch = this.#batch;
    this.flush();
    await batch?.promise.catch(() => undefined);
  }
}
