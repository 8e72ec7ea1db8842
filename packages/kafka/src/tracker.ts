/** One message handed to core: settled once, by ack / retry / dead letter, or released (never committed past). */
export interface TrackedOffset {
  readonly offset: number;
  done: boolean;
  released: boolean;
  /** Times it was released and handed to core again by this consumer (its redelivery backoff). */
  releases?: number;
}

/**
 * The offsets of one partition that core holds. Core settles out of order
 * (concurrency > 1, different keys), but a Kafka commit means "everything
 * before this offset is done", so the committable offset only moves past a
 * contiguous run of settled messages and stops at the first unsettled or
 * released one.
 */
export class PartitionTracker {
  readonly topic: string;
  readonly partition: number;
  #entries: TrackedOffset[] = [];
  #head = 0;
  /** The next offset to commit (everything below it is settled); undefined before the first message. */
  #committable: number | undefined;
  #committed: number | undefined;
  /** The offset after the last one handed over: where fetching resumes after a rejoin. */
  #fetchNext: number | undefined;

  constructor(topic: string, partition: number) {
    this.topic = topic;
    this.partition = partition;
  }

  get fetchNext(): number | undefined {
    return this.#fetchNext;
  }

  /** Unsettled messages in this partition. */
  get pending(): number {
    return this.#entries.length - this.#head;
  }

  add(offset: number): TrackedOffset {
    const entry: TrackedOffset = { offset, done: false, released: false };
    if (this.#entries.length === this.#head) this.#committable = offset;
    this.#entries.push(entry);
    this.#fetchNext = offset + 1;
    return entry;
  }

  /** Call after marking an entry done: moves the committable offset; true when it moved. */
  advance(): boolean {
    const entries = this.#entries;
    let head = this.#head;
    const start = head;
    while (head < entries.length) {
      const entry = entries[head] as TrackedOffset;
      if (!entry.done || entry.released) break;
      this.#committable = entry.offset + 1;
      head++;
    }
    if (head === start) return false;
    if (head === entries.length) {
      this.#entries = [];
      this.#head = 0;
    } else if (head > 1024 && head * 2 > entries.length) {
      this.#entries = entries.slice(head);
      this.#head = 0;
    } else {
      this.#head = head;
    }
    return true;
  }

  /**
   * Forgets `entry` and everything after it (they will be fetched again from
   * `entry.offset`); their late settlements no longer count.
   */
  rewind(entry: TrackedOffset): void {
    const index = this.#entries.indexOf(entry, this.#head);
    if (index < 0) return;
    this.#entries.length = index;
    this.#fetchNext = entry.offset;
    if (this.#entries.length === this.#head) this.#committable = entry.offset;
  }

  /** The offset to commit now, or undefined when nothing new is committable. */
  dirty(): number | undefined {
    const next = this.#committable;
    if (next === undefined || next === this.#committed) return undefined;
    return next;
  }

  committed(offset: number): void {
    this.#committed = offset;
  }
}
