import { topicMatches } from '../names.js';
import type { OutgoingRecord } from '../transport/spi.js';
import { MemoryResponders } from './requests.js';

/** A message as the in-process broker stores it. */
export interface MemoryEntry {
  readonly record: OutgoingRecord;
  headers: Readonly<Record<string, string>>;
  attempt: number;
}

export interface MemoryConsumer {
  readonly prefetch: number;
  unacked: number;
  deliver(entry: MemoryEntry, queue: MemoryQueue): void;
}

/** One group's durable queue for one topic (pattern): like a RabbitMQ queue bound to a topic exchange. */
export class MemoryQueue {
  readonly pattern: string;
  // A deque as array + head index: shift() on a long backlog is O(n) per message.
  #ready: MemoryEntry[] = [];
  #head = 0;
  readonly #consumers: MemoryConsumer[] = [];
  #next = 0;
  #scheduled = false;

  constructor(pattern: string) {
    this.pattern = pattern;
  }

  get depth(): number {
    return this.#ready.length - this.#head;
  }

  enqueue(entry: MemoryEntry, front = false): void {
    if (!front) this.#ready.push(entry);
    else if (this.#head > 0) this.#ready[--this.#head] = entry;
    else this.#ready.unshift(entry);
    this.schedule();
  }

  #take(): MemoryEntry {
    const entry = this.#ready[this.#head] as MemoryEntry;
    this.#ready[this.#head++] = undefined as unknown as MemoryEntry;
    if (this.#head > 1024 && this.#head * 2 > this.#ready.length) {
      this.#ready = this.#ready.slice(this.#head);
      this.#head = 0;
    }
    return entry;
  }

  /** Delivered to a consumer and not settled yet. */
  get unacked(): number {
    let n = 0;
    for (const c of this.#consumers) n += c.unacked;
    return n;
  }

  addConsumer(consumer: MemoryConsumer): void {
    this.#consumers.push(consumer);
    this.schedule();
  }

  removeConsumer(consumer: MemoryConsumer): void {
    const index = this.#consumers.indexOf(consumer);
    if (index >= 0) this.#consumers.splice(index, 1);
  }

  /** Dispatch on a later turn, like a network broker: never re-enter a handler's call stack. */
  schedule(): void {
    if (this.#scheduled) return;
    this.#scheduled = true;
    setImmediate(() => {
      this.#scheduled = false;
      this.#dispatch();
    });
  }

  #dispatch(): void {
    while (this.depth > 0) {
      const consumer = this.#pick();
      if (!consumer) return;
      consumer.unacked++;
      consumer.deliver(this.#take(), this);
    }
  }

  /** Round robin over consumers with prefetch room. */
  #pick(): MemoryConsumer | undefined {
    const n = this.#consumers.length;
    for (let i = 0; i < n; i++) {
      const consumer = this.#consumers[(this.#next + i) % n] as MemoryConsumer;
      if (consumer.unacked < consumer.prefetch) {
        this.#next = (this.#next + i + 1) % n;
        return consumer;
      }
    }
    return undefined;
  }
}

/** The embedded broker behind `memory://<name>`: one per name per process, shared by every bus on that URL. */
export class MemoryBroker {
  /** Durable group queues by `group\u0000pattern`. */
  readonly #queues = new Map<string, MemoryQueue>();
  /** Live broadcast subscriptions. */
  readonly #broadcast = new Set<{ pattern: string; queue: MemoryQueue }>();
  /** Topics whose writes are refused, for fault tests (see `memoryFaults`). */
  readonly refused = new Set<string>();
  /** Who answers requests on this broker. */
  readonly responders = new MemoryResponders();

  /** The group's queue if it exists (no side effect, unlike `queue`). */
  existing(pattern: string, group: string): MemoryQueue | undefined {
    return this.#queues.get(`${group}\u0000${pattern}`);
  }

  queue(pattern: string, group: string): MemoryQueue {
    const id = `${group}\u0000${pattern}`;
    let queue = this.#queues.get(id);
    if (!queue) {
      queue = new MemoryQueue(pattern);
      this.#queues.set(id, queue);
    }
    return queue;
  }

  addBroadcast(pattern: string): { pattern: string; queue: MemoryQueue } {
    const entry = { pattern, queue: new MemoryQueue(pattern) };
    this.#broadcast.add(entry);
    return entry;
  }

  removeBroadcast(entry: { pattern: string; queue: MemoryQueue }): void {
    this.#broadcast.delete(entry);
  }

  publish(record: OutgoingRecord): void {
    for (const queue of this.#queues.values()) {
      if (topicMatches(queue.pattern, record.topic)) queue.enqueue({ record, headers: record.headers, attempt: 1 });
    }
    for (const { pattern, queue } of this.#broadcast) {
      if (topicMatches(pattern, record.topic)) queue.enqueue({ record, headers: record.headers, attempt: 1 });
    }
  }
}

const brokers = new Map<string, MemoryBroker>();

export function memoryBroker(name: string): MemoryBroker {
  let broker = brokers.get(name);
  if (!broker) {
    broker = new MemoryBroker();
    brokers.set(name, broker);
  }
  return broker;
}

/**
 * Fault injection for tests on the memory transport (the reference and test double of every broker):
 * `memoryFaults('name').refuse('a.b')` makes the `memory://name` broker refuse writes to `a.b`, like a full
 * or forbidden destination on a real broker, until the returned function is called.
 */
export function memoryFaults(name: string): { refuse(topic: string): () => void } {
  const broker = memoryBroker(name);
  return {
    refuse(topic) {
      broker.refused.add(topic);
      return () => void broker.refused.delete(topic);
    },
  };
}
