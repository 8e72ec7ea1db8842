import { ConnectionError } from '@busbar/core';
import { type Deferred, Deque, deferred } from '@busbar/core/transport';
import type { Channel } from 'amqplib';
import { byTag } from './internals.js';

export const stale = (): ConnectionError =>
  new ConnectionError('The channel this message came on is closed: the broker redelivers it');

/** Tags settled one by one behind an unsettled one, at which they are folded away (see #fold). */
const FOLD_AT = 4_096;

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
  readonly #onLost: ((count: number, error: ConnectionError) => void) | undefined;
  #pending: number[] = [];
  #batch: Deferred<void> | undefined;

  /** `onLost`: acks of a batch that could not be sent (the channel closed first), reported once per batch. */
  constructor(channel: Channel, onLost?: (count: number, error: ConnectionError) => void) {
    this.channel = channel;
    this.#onLost = onLost;
  }

  get alive(): boolean {
    return this.#alive;
  }

  /** Delivery tags in its bookkeeping (tests: bounded by what is unsettled, not by what was acked). */
  get tracked(): number {
    return this.#order.length;
  }

  delivered(tag: number): void {
    this.#order.push(tag);
  }

  /** An ack to wait for: resolves once it is written (the retry path, which acks after its copy). */
  ack(tag: number): Promise<void> {
    if (!this.#alive) return Promise.reject(stale());
    this.#pending.push(tag);
    return this.#schedule().promise;
  }

  /**
   * An ack nobody waits for (a handled message): amqplib writes acks without an answer from the broker, so the
   * only failure is a channel that closes before this turn's flush, and then the broker redelivers the message
   * anyway. Reported through `onLost`, once per batch; no promise per message. Throws if the channel is closed.
   */
  queue(tag: number): void {
    if (!this.#alive) throw stale();
    this.#pending.push(tag);
    this.#schedule();
  }

  #schedule(): Deferred<void> {
    if (!this.#batch) {
      this.#batch = deferred();
      // A batch of queued acks only may have nobody awaiting it: its failure goes to onLost, never unhandled.
      this.#batch.promise.catch(() => undefined);
      setImmediate(() => this.flush());
    }
    return this.#batch;
  }

  /** Requeue (`release`) or drop one delivery; immediate, not coalesced. */
  nack(tag: number, requeue: boolean): void {
    if (!this.#alive) throw stale();
    this.channel.nack(byTag(tag), false, requeue);
    this.#settled.add(tag);
    this.#fold();
  }

  flush(): void {
    const batch = this.#batch;
    if (!batch) return;
    this.#batch = undefined;
    const pending = this.#pending;
    this.#pending = [];
    if (!this.#alive) {
      this.#lost(batch, pending.length);
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
      this.#fold();
      batch.resolve();
    } catch {
      this.#alive = false;
      this.#lost(batch, pending.length);
    }
  }

  /**
   * A delivery that stays unsettled stops the walk from the front while later ones are acked one by one: a
   * broadcast subscription holds one that is not due yet in process, for as long as its publisher (or a foreign
   * `busbar-deliver-at`) asks, up to weeks, and every message acked meanwhile stayed in both books until then.
   * A tag acked or nacked already is no longer outstanding, so no `multiple` ack depends on it: once such tags
   * are as many as the rest (and FOLD_AT at least), they go. What is kept stays within FOLD_AT or twice what is
   * unsettled, at a constant cost per message.
   */
  #fold(): void {
    if (this.#settled.size < FOLD_AT || 2 * this.#settled.size < this.#order.length) return;
    for (const tag of this.#order.drain()) if (!this.#settled.delete(tag)) this.#order.push(tag);
  }

  #lost(batch: Deferred<void>, count: number): void {
    const error = stale();
    if (count > 0) this.#onLost?.(count, error);
    batch.reject(error);
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
