import type { Logger } from '@busbar/core/transport';
import { sanitizeError } from '@busbar/core/transport';
import type { Consumer } from 'kafkajs';
import { PartitionTracker } from './tracker.js';

export interface CommitterConfig {
  readonly name: string;
  readonly intervalMs: number;
  readonly logger: Logger;
  readonly secrets: readonly string[];
  /** The consumer to commit through (it changes when a hung one is replaced). */
  readonly consumer: () => Consumer | undefined;
}

const key = (topic: string, partition: number) => `${partition}\u0000${topic}`;

/**
 * The partitions a subscription owns and their settled offsets. Commits are
 * batched (at most one in flight, every `intervalMs`) and only ever cover
 * messages core has settled.
 */
export class Committer {
  readonly #config: CommitterConfig;
  readonly #trackers = new Map<string, PartitionTracker>();
  #timer: NodeJS.Timeout | undefined;
  #committing: Promise<void> | undefined;
  #stopped = false;

  constructor(config: CommitterConfig) {
    this.#config = config;
  }

  tracker(topic: string, partition: number): PartitionTracker {
    const k = key(topic, partition);
    let tracker = this.#trackers.get(k);
    if (!tracker) {
      tracker = new PartitionTracker(topic, partition);
      this.#trackers.set(k, tracker);
    }
    return tracker;
  }

  /** False once the partition was lost in a rebalance: its settlements no longer count. */
  owns(tracker: PartitionTracker): boolean {
    return this.#trackers.get(key(tracker.topic, tracker.partition)) === tracker;
  }

  /** A new assignment: forgets the partitions lost, returns the ones kept. */
  assign(assignment: Record<string, number[]>): PartitionTracker[] {
    const owned = new Set<string>();
    for (const [topic, partitions] of Object.entries(assignment)) for (const p of partitions) owned.add(key(topic, p));
    const kept: PartitionTracker[] = [];
    for (const [k, tracker] of this.#trackers) {
      if (owned.has(k)) kept.push(tracker);
      else this.#trackers.delete(k);
    }
    return kept;
  }

  /** Commit soon (coalesced with everything else settled meanwhile). */
  soon(): void {
    if (this.#stopped || this.#timer !== undefined || this.#committing !== undefined) return;
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      void this.flush();
    }, this.#config.intervalMs);
  }

  /** Commits every partition whose committable offset moved. */
  async flush(): Promise<void> {
    while (this.#committing) await this.#committing;
    const due: { tracker: PartitionTracker; offset: number }[] = [];
    for (const tracker of this.#trackers.values()) {
      const offset = tracker.dirty();
      if (offset !== undefined) due.push({ tracker, offset });
    }
    const consumer = this.#config.consumer();
    if (due.length === 0 || consumer === undefined) return;
    const offsets = due.map(({ tracker, offset }) => ({
      topic: tracker.topic,
      partition: tracker.partition,
      offset: String(offset),
    }));
    this.#committing = consumer.commitOffsets(offsets).then(
      () => {
        for (const { tracker, offset } of due) tracker.committed(offset);
      },
      (error: unknown) => {
        this.#config.logger.warn(
          `Kafka ${this.#config.name}: committing offsets failed; messages may be delivered again`,
          {
            error: sanitizeError(error, this.#config.secrets),
          },
        );
      },
    );
    try {
      await this.#committing;
    } finally {
      this.#committing = undefined;
    }
    if (due.some(({ tracker }) => tracker.dirty() !== undefined)) this.soon();
  }

  /** The last commit (graceful close); nothing is scheduled after it. */
  async close(): Promise<void> {
    this.#stopped = true;
    if (this.#timer !== undefined) clearTimeout(this.#timer);
    this.#timer = undefined;
    await this.flush();
  }
}
