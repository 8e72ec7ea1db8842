import type { BusbarError } from '@busbar/core';
import { HEADER, type RetryRequest, type SettleAction, SettleOnce } from '@busbar/core/transport';
import type { JsMsg } from 'nats';
import { type Decoded, position } from './codec.js';
import { toBusbarError } from './errors.js';
import type { RetrySource } from './retry.js';

/** The group member that holds a delivery until core settles it. */
export interface Holder {
  /** Writes the retry copy of `d` (PubAck confirmed). */
  retry(d: NatsDelivery, request: RetryRequest): Promise<void>;
  /** `d` is settled (acked, retried or released): stop keeping it alive. */
  settled(d: NatsDelivery): void;
}

/**
 * One JetStream message handed to core. A class, not an object of closures: four closures per message were a
 * measurable part of consume. `holder` is undefined for a broadcast subscription, whose ordered consumer
 * takes no acks: its ack, retry and release do nothing.
 */
export class NatsDelivery extends SettleOnce<JsMsg> {
  readonly #holder: Holder | undefined;
  readonly #stream: string;
  readonly #sequence: number;
  readonly #epoch: number | undefined;
  /** Read from the retry stream: its headers already carry the source position. */
  readonly #copy: boolean;

  constructor(m: JsMsg, d: Decoded & { readonly topic?: string }, holder: Holder | undefined, copy: boolean) {
    super(
      {
        id: d.id,
        topic: d.topic ?? m.subject,
        key: d.key,
        headers: d.headers,
        body: m.data,
        timestamp: d.timestamp,
        contentType: d.contentType,
        attempt: d.attempt,
      },
      m,
    );
    this.#holder = holder;
    this.#stream = d.stream;
    this.#sequence = d.sequence;
    this.#epoch = d.epoch;
    this.#copy = copy;
  }

  /** The stream position of the message as first read, for its retries and dead letter. */
  deadLetterHeaders(): Readonly<Record<string, string>> | undefined {
    return this.#copy ? undefined : { [HEADER.sourceOffset]: `${this.#stream}:${this.#sequence}` };
  }

  /** For the retry copy: what this delivery is, and where it was read (one copy per delivered message). */
  get source(): RetrySource {
    return {
      id: this.id,
      topic: this.topic,
      key: this.key,
      body: this.body,
      timestamp: this.timestamp,
      contentType: this.contentType,
      // The stream's creation time keeps a copy apart from one of the same place in an earlier incarnation of
      // the stream (deleted and created again within the retry stream's duplicate window).
      position: position({ stream: this.#stream, sequence: this.#sequence, epoch: this.#epoch }),
    };
  }

  /** Read from the retry stream. */
  get copy(): boolean {
    return this.#copy;
  }

  protected override settled(): void {
    this.#holder?.settled(this);
  }

  // nats.js queues acks without waiting: nothing to await. A client that throws instead gets a typed
  // rejection through `settleError`, never a throw past the driver.
  protected ackNative(): undefined {
    if (this.#holder !== undefined) this.raw.ack();
    return undefined;
  }

  /**
   * The copy goes to the group's retry subject first (PubAck), and only then is this message acked: if the
   * process dies in between, the message comes back after the ack wait and its copy is not stored twice.
   * A failed copy leaves the delivery unsettled (SettleOnce), so core can still release it.
   */
  protected async retryNative(request: RetryRequest): Promise<void> {
    if (this.#holder === undefined) return;
    await this.#holder.retry(this, request);
    // The copy is durable: a lost ack only brings this message back after the ack wait (its copy is deduped).
    quietly(() => this.raw.ack());
  }

  protected releaseNative(): undefined {
    if (this.#holder !== undefined) this.raw.nak();
    return undefined;
  }

  protected override settleError(error: unknown, action: SettleAction): BusbarError {
    // Creating the retry stream can fail with a native error; the copy's publish fails typed already.
    const what =
      action === 'retry'
        ? `Writing the retry copy of a message of '${this.topic}' failed`
        : `${action === 'ack' ? 'Acking' : 'Releasing'} a message of '${this.topic}' failed`;
    return toBusbarError(error, { what, op: action === 'retry' ? 'publish' : 'consume', secrets: [] });
  }
}

/**
 * An ack, nak or `working()` that must not throw past the driver. nats.js 2.29 queues them without checking
 * the connection (lost on a closed one); a client that checks throws synchronously instead, as its
 * `publish()` does. False when it threw; the message then comes back after its ack wait.
 */
export function quietly(send: () => void): boolean {
  try {
    send();
    return true;
  } catch {
    return false;
  }
}
