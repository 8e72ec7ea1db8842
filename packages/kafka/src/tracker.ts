/** One message handed to core: settled once, by ack / retry / dead letter, or released (never committed past). */
export interface TrackedOffset {
  readonly offset: number;
  done: boolean;
  released: boolean;
  /** Times it was released and handed to core again by this consumer (its redelivery backoff). */
  releases?: number;
}

/** Entries kept past the head at which settled ones are folded away (see #fold). */
const FOLD_AT = 4_096;

const settled = (entry: TrackedOffset | undefined): boolean => entry?.done === true && !entry.released;

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
  #foldAt = FOLD_AT;
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

  /** Entries kept: the unsettled messages of this partition and, behind one, the last of each run of settled ones. */
  get pending(): number {
    return this.#entries.length - this.#head;
  }

  add(offset: number): TrackedOffset {
    const entry: TrackedOffset = { offset, done: false, released: false };
    if (this.#entries.length === this.#head) this.#committable = offset;
    this.#entries.push(entry);
    this.#fetchNext = offset + 1;
    if (this.#entries.length - this.#head >= this.#foldAt) this.#fold();
    return entry;
  }

  /**
   * A message that stays unsettled stops the head while later ones settle: a broadcast subscription holds one
   * that is not due yet in process, for as long as its publisher (or a foreign `busbar-deliver-at`) asks, up to
   * weeks, and every message handled meanwhile stayed here until then. Of a run of settled entries only the last
   * counts (the commit moves past the whole run to it), so the others go: what is kept stays within FOLD_AT or a
   * few times what is unsettled, and folding only once the list has doubled keeps the cost per message constant.
   */
  #fold(): void {
    const entries = this.#entries;
    const kept: TrackedOffset[] = [];
    for (let i = this.#head; i < entries.length; i++) {
      const entry = entries[i] as TrackedOffset;
      if (!settled(entry) || !settled(entries[i + 1])) kept.push(entry);
    }
    this.#entries = kept;
    this.#head = 0;
    this.#foldAt = Math.max(FOLD_AT, 2 * kept.length);
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
