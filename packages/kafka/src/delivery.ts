import { isUtf8 } from 'node:buffer';
import type { RetryRequest, SettleAction } from '@busbar/core/transport';
import { HEADER, SettleOnce } from '@busbar/core/transport';
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
 * before that. Kafka has a native identity (topic, partition, offset): an id
 * is never made up.
 */
export class KafkaDelivery extends SettleOnce<KafkaRaw> {
  readonly #record: DecodedRecord;
  readonly #host: SettleHost;
  readonly #tracker: PartitionTracker;
  readonly #entry: TrackedOffset;

  constructor(record: DecodedRecord, host: SettleHost, tracker: PartitionTracker, entry: TrackedOffset) {
    super(record, record.raw);
    this.#record = record;
    this.#host = host;
    this.#tracker = tracker;
    this.#entry = entry;
  }

  /** The partition and offset it was first read from, for its retries and dead letter. */
  deadLetterHeaders(): Readonly<Record<string, string>> | undefined {
    // A tombstone's retry and dead letter are tombstones too (codec.ts writes the mark as a null value).
    const mark = this.raw.tombstone ? { [HEADER.tombstone]: '1' } : undefined;
    if (this.#record.fromRetry) return mark;
    // A binary key travels as its bytes (the string key core has is not them): codec.ts writes them back.
    const key = this.raw.key;
    const bytes = key !== null && !isUtf8(key) ? { [HEADER.keyBytes]: key.toString('base64') } : undefined;
    return {
      [HEADER.sourcePartition]: String(this.raw.partition),
      [HEADER.sourceOffset]: this.raw.offset,
      ...mark,
      ...bytes,
    };
  }

  /** The same record handed to core again (after a release), still holding its place in the partition. */
  again(): KafkaDelivery {
    return new KafkaDelivery(this.#record, this.#host, this.#tracker, this.#entry);
  }

  // The offset is marked settled by `settled` below; the commit follows in the background.
  protected ackNative(): undefined {
    return undefined;
  }

  /** Written to the group's retry topic (acks=all) before the source offset may be committed. */
  protected retryNative(request: RetryRequest): Promise<void> {
    return this.#host.scheduleRetry(this, request.delayMs, request.attempt, request.headers);
  }

  // The consumer redelivers a released record itself (`settled` hands it over).
  protected releaseNative(): undefined {
    return undefined;
  }

  protected override settled(action: SettleAction): void {
    this.#host.settled(this.#tracker, this.#entry, action === 'release' ? this : undefined);
  }
}
