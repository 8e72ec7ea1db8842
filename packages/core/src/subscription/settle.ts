import { channels, type Outcome, type SettledEvent } from '../events.js';
import { toFailure } from '../thrown.js';
import { SETTLED_SYNC } from '../transport/delivery.js';
import type { Delivery } from '../transport/spi.js';
import type { SubscriptionHost } from './state.js';

/**
 * The broker side of settling: acks that do not hold a handler's slot, releases, the `busbar:settled`
 * events, and knowing when everything sent to the broker has been answered (for close()).
 */
export class Settlement {
  readonly #host: SubscriptionHost;
  readonly #topic: string;
  readonly #group: string | undefined;
  /** Releases and acks of failure paths in flight. */
  readonly #settling = new Set<Promise<void>>();
  /** Acks sent for handled messages and not yet answered by the broker. */
  #acking = 0;
  #acksDone: (() => void) | undefined;

  constructor(host: SubscriptionHost, topic: string, group: string | undefined) {
    this.#host = host;
    this.#topic = topic;
    this.#group = group;
  }

  /**
   * Acks without holding the handler's concurrency slot: the next message starts while the broker
   * confirms this one (waiting cost a broker round trip per `concurrency` messages, measured as the
   * main consume cost on Redis). The delivery stays counted by the transport's prefetch until then,
   * and close() waits for every ack.
   */
  ack(d: Delivery, outcome: 'acked' | 'duplicate', handlerStartedAt: number | undefined): void {
    let acked: Promise<void>;
    try {
      acked = d.ack();
    } catch (error) {
      // A driver that throws instead of rejecting: same outcome, and nothing left counted.
      this.warn('ack failed; the broker will redeliver', error);
      return;
    }
    const listening = channels.settled.hasSubscribers;
    // Only a listener reads the handler time: no clock read per message otherwise.
    const durationMs = listening && handlerStartedAt !== undefined ? Date.now() - handlerStartedAt : 0;
    // Acked synchronously (most drivers queue an ack without waiting): nothing to wait for or count.
    if (acked === SETTLED_SYNC) {
      // Emitted a microtask later, as after an asynchronous ack: once the message has left the in-flight set.
      if (listening) queueMicrotask(() => this.emit(d, outcome, durationMs));
      return;
    }
    this.#acking++;
    // Nobody listens for settle events (the usual case): shared callbacks, no closures per message.
    if (!listening) {
      acked.then(this.#ackedQuietly, this.#ackFailed);
      return;
    }
    acked.then(() => {
      this.#acked();
      this.emit(d, outcome, durationMs);
    }, this.#ackFailed);
  }

  #acked(): void {
    if (--this.#acking === 0) this.#acksDone?.();
  }

  readonly #ackedQuietly = (): void => this.#acked();
  readonly #ackFailed = (error: unknown): void => {
    this.#acked();
    this.warn('ack failed; the broker will redeliver', error);
  };

  /** Gives a message back to the broker; close() waits for it. */
  release(d: Delivery): void {
    this.track(this.#safely(() => d.release()).catch((e) => this.warn('release failed', e)));
  }

  /** Acks outside the handler path (a dead letter seen by a wildcard group); close() waits for it. */
  drop(d: Delivery): void {
    this.track(this.#safely(() => d.ack()).catch((e) => this.warn('ack failed', e)));
  }

  #safely(call: () => Promise<void>): Promise<void> {
    try {
      return call();
    } catch (error) {
      return Promise.reject(error);
    }
  }

  track(promise: Promise<void>): void {
    this.#settling.add(promise);
    promise.finally(() => this.#settling.delete(promise));
  }

  /** Resolves when every release, failure-path ack and handled ack has been answered. */
  async drained(): Promise<void> {
    while (this.#settling.size > 0) await Promise.all(this.#settling);
    if (this.#acking > 0) {
      await new Promise<void>((resolve) => {
        this.#acksDone = resolve;
      });
    }
  }

  emit(d: Delivery, outcome: Outcome, durationMs: number, error?: unknown, delayMs?: number, dlq?: string): void {
    if (!channels.settled.hasSubscribers) return;
    const event: SettledEvent = {
      system: this.#host.system,
      topic: d.topic,
      group: this.#group,
      id: d.id,
      attempt: d.attempt,
      outcome,
      durationMs,
      ...(error === undefined ? {} : { error: toFailure(error) }),
      ...(delayMs === undefined ? {} : { delayMs }),
      ...(dlq === undefined ? {} : { deadLetterTopic: dlq }),
    };
    channels.settled.publish(event);
  }

  warn(message: string, error: unknown): void {
    this.#host.logger.warn(`${message} (topic '${this.#topic}', group ${this.#group ?? '-'})`, {
      error: toFailure(error),
    });
  }
}
