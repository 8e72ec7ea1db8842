import type { Delivery, RetryRequest } from '@busbar/core/transport';
import { HEADER } from '@busbar/core/transport';
import type { DecodedRecord, KafkaRaw } from './codec.js';
import type { PartitionTracker, TrackedOffset } from './tracker.js';

/** What a delivery reports back to its subscription. */
export interface SettleHost {
  settled(tracker: PartitionTracker, entry: TrackedOffset, released: KafkaDelivery | undefined): void;
  scheduleRetry(
    delivery: KafkaDelivery,
    delayMs: number,
    attempt: number,
    headers: Readonly<Record<string, string>>,
  ): Promise<void>;
}

/**
 * One Kafka record owned by core. Acking marks its offset settled (committed
 * in the background with its neighbours); nothing is committed past it
 * before that.
 */
export class KafkaDelivery implements Delivery {
  readonly id: string;
  readonly topic: string;
  readonly key: string | undefined;
  readonly headers: Readonly<Record<string, string>>;
  readonly body: Uint8Array;
  readonly contentType: string | undefined;
  readonly timestamp: number;
  /** Kafka has a native identity (topic, partition, offset): an id is never made up. */
  readonly idGenerated = false;
  readonly attempt: number;
  readonly raw: KafkaRaw;
  readonly #record: DecodedRecord;
  readonly #host: SettleHost;
  readonly #tracker: PartitionTracker;
  readonly #entry: TrackedOffset;
  readonly #fromRetry: boolean;
  #settled = false;

  constructor(record: DecodedRecord, host: SettleHost, tracker: PartitionTracker, entry: TrackedOffset) {
    this.id = record.id;
    this.topic = record.topic;
    this.key = record.key;
    this.headers = record.headers;
    this.body = record.body;
    this.contentType = record.contentType;
    this.timestamp = record.timestamp;
    this.attempt = record.attempt;
    this.raw = record.raw;
    this.#record = record;
    this.#host = host;
    this.#tracker = tracker;
    this.#entry = entry;
    this.#fromRetry = record.fromRetry;
  }

  /** The partition and offset it was first read from, for its retries and dead letter. */
  deadLetterHeaders(): Readonly<Record<string, string>> | undefined {
    // A tombstone's retry and dead letter are tombstones too (codec.ts writes the mark as a null value).
    const mark = this.raw.tombstone ? { [HEADER.tombstone]: '1' } : undefined;
    if (this.#fromRetry) return mark;
    return { [HEADER.sourcePartition]: String(this.raw.partition), [HEADER.sourceOffset]: this.raw.offset, ...mark };
  }

  async ack(): Promise<void> {
    if (this.#settled) return;
    this.#settled = true;
    this.#host.settled(this.#tracker, this.#entry, undefined);
  }

  /** The same record handed to core again (after a release), still holding its place in the partition. */
  again(): KafkaDelivery {
    return new KafkaDelivery(this.#record, this.#host, this.#tracker, this.#entry);
  }

  /** Written to the group's retry topic (acks=all) before the source offset may be committed. */
  async retry(request: RetryRequest): Promise<void> {
    if (this.#settled) return;
    await this.#host.scheduleRetry(this, request.delayMs, request.attempt, request.headers);
    if (this.#settled) return;
    this.#settled = true;
    this.#host.settled(this.#tracker, this.#entry, undefined);
  }

  async release(): Promise<void> {
    if (this.#settled) return;
    this.#settled = true;
    this.#host.settled(this.#tracker, this.#entry, this);
  }
}
