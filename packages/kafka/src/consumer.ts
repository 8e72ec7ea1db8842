import { randomUUID } from 'node:crypto';
import type { Logger, SubscribeCallbacks, SubscribeSpec, TransportSubscription } from '@busbar/core/transport';
import { deferred, HEADER, sanitizeError } from '@busbar/core/transport';
import type { Consumer, EachBatchPayload, Kafka } from 'kafkajs';
import { decode, KAFKA_HEADER } from './codec.js';
import { KafkaDelivery, type SettleHost } from './delivery.js';
import { startConsumer } from './native.js';
import type { KafkaOptions } from './options.js';
import type { Publisher } from './publisher.js';
import { isDeadLetterReader, kafkaGroupId, retryTopicFor, type Topology } from './topology.js';
import { PartitionTracker, type TrackedOffset } from './tracker.js';

export interface ConsumerDeps {
  readonly kafka: Kafka;
  readonly options: KafkaOptions;
  readonly topology: Topology;
  readonly publisher: Publisher;
  readonly logger: Logger;
  readonly secrets: readonly string[];
  readonly joinTimeoutMs: number;
  readonly reportState: (
    connection: string,
    state: 'connecting' | 'up' | 'reconnecting' | 'down',
    error?: unknown,
  ) => void;
}

const key = (topic: string, partition: number) => `${partition}\u0000${topic}`;

/**
 * One subscription = one kafkajs consumer in the group (a unique group for a
 * broadcast), reading the topic and, for groups, the group's retry topic.
 * Records are handed to core as they arrive (bounded by the prefetch) and the
 * fetch position moves on at once; offsets are committed separately, per
 * partition, only up to the first message core has not settled.
 */
export class KafkaSubscription implements TransportSubscription, SettleHost {
  readonly #spec: SubscribeSpec;
  readonly #callbacks: SubscribeCallbacks;
  readonly #deps: ConsumerDeps;
  readonly #groupId: string;
  readonly #broadcast: boolean;
  readonly retryTopic: string | undefined;
  #consumer: Consumer | undefined;
  #watchdog: NodeJS.Timeout | undefined;
  #lastActivity = Date.now();
  #replacing = false;
  readonly #name: string;
  readonly #trackers = new Map<string, PartitionTracker>();
  readonly #holds = new Map<number, NodeJS.Timeout>();
  #waiters: (() => void)[] = [];
  #unsettled = 0;
  #stopping = false;
  #positioned = false;
  readonly #joined = deferred();
  #commitTimer: NodeJS.Timeout | undefined;
  #committing: Promise<void> | undefined;

  constructor(spec: SubscribeSpec, callbacks: SubscribeCallbacks, deps: ConsumerDeps) {
    this.#spec = spec;
    this.#callbacks = callbacks;
    this.#deps = deps;
    this.#broadcast = spec.group === undefined;
    this.#groupId =
      spec.group === undefined ? `busbar-broadcast-${randomUUID()}` : kafkaGroupId(spec.topic, spec.group);
    this.retryTopic = spec.group === undefined ? undefined : retryTopicFor(spec.topic, spec.group);
    this.#name = `consumer ${spec.topic} (${spec.group ?? 'broadcast'})`;
    // Awaited (raced) in start(); a crash after that must not surface as an unhandled rejection.
    this.#joined.promise.catch(() => undefined);
  }

  get settleCommits(): boolean {
    return !this.#broadcast;
  }

  async start(): Promise<void> {
    const { topology } = this.#deps;
    const topics = this.retryTopic ? [this.#spec.topic, this.retryTopic] : [this.#spec.topic];
    await topology.ensureTopics(topics);
    this.#deps.reportState(this.#name, 'connecting');
    await this.#launch();
    this.#watchdog = setInterval(() => this.#checkAlive(), 5_000);
    this.#watchdog.unref();
    // Resolve once the start offsets are fixed, so anything published from now on is seen.
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<void>((resolve) => {
      timer = setTimeout(() => {
        this.#deps.logger.warn(
          `Kafka ${this.#name} has not joined its group after ${this.#deps.joinTimeoutMs} ms; it keeps trying`,
        );
        resolve();
      }, this.#deps.joinTimeoutMs);
    });
    try {
      await Promise.race([this.#joined.promise, timeout]);
    } finally {
      clearTimeout(timer);
    }
  }

  #launch(): Promise<Consumer> {
    const fromStart = this.#spec.group !== undefined && isDeadLetterReader(this.#spec.group);
    const topics = {
      topic: this.#spec.topic,
      fromBeginning: fromStart || this.#deps.options.fromBeginning,
      retryTopic: this.retryTopic,
    };
    return startConsumer(this.#deps.kafka, this.#groupId, this.#deps.options, topics, {
      onCreated: (c) => {
        this.#consumer = c;
      },
      onJoin: (c, assignment) => {
        if (c === this.#consumer) this.#onJoin(c, assignment);
      },
      onRebalancing: () => void this.#flush(),
      onActivity: () => {
        this.#lastActivity = Date.now();
      },
      onCrash: (error, restart) => {
        const clean = sanitizeError(error, this.#deps.secrets);
        this.#deps.reportState(this.#name, restart ? 'reconnecting' : 'down', clean);
        if (!restart) {
          this.#joined.reject(error);
          this.#callbacks.onError(clean);
        }
      },
      eachBatch: (c, payload) => (c === this.#consumer ? this.#eachBatch(c, payload) : Promise.resolve()),
    });
  }

  /**
   * kafkajs can hang for good after connections are cut (a request whose
   * answer never comes): a consumer that has neither fetched nor heartbeated
   * for a while is replaced by a new one, which rejoins the group.
   */
  #checkAlive(): void {
    const limit = Math.max(3 * this.#deps.options.sessionTimeoutMs, 15_000);
    if (this.#stopping || this.#replacing || Date.now() - this.#lastActivity < limit) return;
    this.#replacing = true;
    const old = this.#consumer;
    this.#deps.logger.warn(`Kafka ${this.#name} has been silent for ${limit} ms; replacing its consumer`);
    this.#deps.reportState(this.#name, 'reconnecting');
    this.#consumer = undefined;
    void old?.disconnect().catch(() => undefined);
    this.#launch().then(
      () => {
        this.#lastActivity = Date.now();
        this.#replacing = false;
        if (this.#stopping) void this.close();
      },
      (error: unknown) => {
        this.#deps.logger.warn(`Kafka ${this.#name}: replacing the consumer failed; trying again`, {
          error: sanitizeError(error, this.#deps.secrets),
        });
        this.#lastActivity = Date.now();
        this.#replacing = false;
      },
    );
  }

  #onJoin(c: Consumer, assignment: Record<string, number[]>): void {
    const owned = new Set<string>();
    for (const [topic, partitions] of Object.entries(assignment)) for (const p of partitions) owned.add(key(topic, p));
    // Partitions lost in the rebalance: never commit for them again (their new owner reads from the last commit).
    for (const [k, tracker] of this.#trackers) {
      if (!owned.has(k)) this.#trackers.delete(k);
      else if (tracker.fetchNext !== undefined) {
        // kafkajs restarts kept partitions from the committed offset: continue after what core already holds.
        c.seek({ topic: tracker.topic, partition: tracker.partition, offset: String(tracker.fetchNext) });
      }
    }
    for (const timer of this.#holds.values()) clearTimeout(timer);
    this.#holds.clear();
    if (this.retryTopic) c.resume([{ topic: this.retryTopic }]);
    if (this.#stopping) this.#pauseAll();
    this.#deps.reportState(this.#name, 'up');
    if (this.#positioned) return;
    c.pause([{ topic: this.#spec.topic }]);
    this.#position(c, assignment[this.#spec.topic] ?? []).then(
      () => {
        this.#positioned = true;
        if (!this.#stopping) c.resume([{ topic: this.#spec.topic }]);
        this.#joined.resolve();
      },
      (error: unknown) => {
        this.#deps.logger.warn(`Kafka ${this.#name}: fixing the start offsets failed; will retry on the next join`, {
          error: sanitizeError(error, this.#deps.secrets),
        });
        if (!this.#stopping) c.resume([{ topic: this.#spec.topic }]);
      },
    );
  }

  /**
   * A group with no committed offsets starts at the end of the topic, and
   * commits that position for every partition at once so that members joining
   * later (or after a rebalance) do not skip what was published meanwhile.
   */
  async #position(c: Consumer, assigned: readonly number[]): Promise<void> {
    const { topology } = this.#deps;
    const topic = this.#spec.topic;
    if (this.#broadcast) {
      const end = await topology.endOffsets(topic);
      for (const partition of assigned) c.seek({ topic, partition, offset: end.get(partition) ?? '0' });
      return;
    }
    if (isDeadLetterReader(this.#spec.group as string)) return;
    const missing = await topology.uncommitted(this.#groupId, topic);
    if (missing.length === 0) return;
    const end = await topology.endOffsets(topic);
    const offsets = missing.map((partition) => ({ topic, partition, offset: end.get(partition) ?? '0' }));
    await c.commitOffsets(offsets);
    for (const o of offsets) if (assigned.includes(o.partition)) c.seek(o);
  }

  async #eachBatch(c: Consumer, payload: EachBatchPayload): Promise<void> {
    const { batch, resolveOffset, heartbeat, isRunning, isStale, pause } = payload;
    const { topic, partition } = batch;
    const fromRetry = topic === this.retryTopic;
    const k = key(topic, partition);
    let tracker = this.#trackers.get(k);
    if (!tracker) {
      tracker = new PartitionTracker(topic, partition);
      this.#trackers.set(k, tracker);
    }
    const prefetch = this.#spec.prefetch;
    for (const message of batch.messages) {
      if (this.#stopping || !isRunning() || isStale() || c !== this.#consumer) return;
      if (fromRetry) {
        const due = Number(message.headers?.[KAFKA_HEADER.due]?.toString() ?? 0);
        if (due > Date.now()) {
          this.#hold(partition, due, pause);
          return;
        }
      }
      while (this.#unsettled >= prefetch) {
        await this.#waitForRoom();
        if (this.#stopping || !isRunning() || isStale()) return;
        await heartbeat();
      }
      const entry = tracker.add(Number(message.offset));
      resolveOffset(message.offset);
      this.#unsettled++;
      const record = decode(topic, partition, message, fromRetry);
      this.#callbacks.onDelivery(new KafkaDelivery(record, this, tracker, entry));
    }
  }

  /** The retry topic partition waits for its next due message without holding up the main topic. */
  #hold(partition: number, due: number, pause: () => () => void): void {
    if (this.#holds.has(partition)) return;
    const resume = pause();
    const timer = setTimeout(
      () => {
        this.#holds.delete(partition);
        if (!this.#stopping) resume();
      },
      Math.min(due - Date.now(), 2_147_483_647),
    );
    this.#holds.set(partition, timer);
  }

  #waitForRoom(): Promise<void> {
    return new Promise<void>((resolve) => {
      const timer = setTimeout(resolve, this.#deps.options.heartbeatIntervalMs);
      this.#waiters.push(() => {
        clearTimeout(timer);
        resolve();
      });
    });
  }

  /** From KafkaDelivery: one delivery settled (acked, retried, dead-lettered or released). */
  settled(tracker: PartitionTracker, entry: TrackedOffset, released: boolean): void {
    this.#unsettled--;
    if (this.#waiters.length > 0) {
      const waiters = this.#waiters;
      this.#waiters = [];
      for (const wake of waiters) wake();
    }
    if (this.#broadcast) return;
    if (released) {
      entry.released = true;
      if (this.#stopping || this.#trackers.get(key(tracker.topic, tracker.partition)) !== tracker) return;
      // Give it back within this consumer: read the partition again from here.
      tracker.rewind(entry);
      this.#consumer?.seek({ topic: tracker.topic, partition: tracker.partition, offset: String(entry.offset) });
      return;
    }
    entry.done = true;
    if (tracker.advance()) this.#commitSoon();
  }

  /** From KafkaDelivery: schedule a retry on the group's retry topic. */
  async scheduleRetry(
    delivery: KafkaDelivery,
    delayMs: number,
    attempt: number,
    headers: Readonly<Record<string, string>>,
  ): Promise<void> {
    const topic = this.retryTopic;
    if (topic === undefined) throw new Error('A broadcast subscription has no retry topic');
    await this.#deps.publisher.publish(
      [
        {
          topic,
          id: delivery.id,
          key: delivery.key,
          headers,
          body: delivery.body,
          contentType: '',
          timestamp: delivery.timestamp,
        },
      ],
      {
        [HEADER.attempt]: String(attempt),
        [HEADER.topic]: delivery.topic,
        [KAFKA_HEADER.due]: String(Date.now() + delayMs),
      },
    );
  }

  #commitSoon(): void {
    if (this.#commitTimer !== undefined || this.#committing !== undefined) return;
    this.#commitTimer = setTimeout(() => {
      this.#commitTimer = undefined;
      void this.#flush();
    }, this.#deps.options.commitIntervalMs);
  }

  /** Commits every partition whose committable offset moved. One commit in flight at a time. */
  async #flush(): Promise<void> {
    while (this.#committing) await this.#committing;
    if (this.#broadcast) return;
    const due: { tracker: PartitionTracker; offset: number }[] = [];
    for (const tracker of this.#trackers.values()) {
      const offset = tracker.dirty();
      if (offset !== undefined) due.push({ tracker, offset });
    }
    const consumer = this.#consumer;
    if (due.length === 0 || consumer === undefined) return;
    this.#committing = consumer
      .commitOffsets(
        due.map(({ tracker, offset }) => ({
          topic: tracker.topic,
          partition: tracker.partition,
          offset: String(offset),
        })),
      )
      .then(
        () => {
          for (const { tracker, offset } of due) tracker.committed(offset);
        },
        (error: unknown) => {
          this.#deps.logger.warn(
            `Kafka ${this.#name}: committing offsets failed; the messages may be delivered again`,
            {
              error: sanitizeError(error, this.#deps.secrets),
            },
          );
        },
      )
      .finally(() => {
        this.#committing = undefined;
      });
    await this.#committing;
    if (!this.#stopping) for (const { tracker } of due) if (tracker.dirty() !== undefined) this.#commitSoon();
  }

  #pauseAll(): void {
    const topics = this.retryTopic ? [this.#spec.topic, this.retryTopic] : [this.#spec.topic];
    this.#consumer?.pause(topics.map((topic) => ({ topic })));
  }

  async stop(): Promise<void> {
    if (this.#stopping) return;
    this.#stopping = true;
    for (const timer of this.#holds.values()) clearTimeout(timer);
    this.#holds.clear();
    for (const wake of this.#waiters.splice(0)) wake();
    try {
      this.#pauseAll();
    } catch {
      // Not running (it crashed): nothing to pause.
    }
  }

  async close(): Promise<void> {
    await this.stop();
    if (this.#commitTimer !== undefined) clearTimeout(this.#commitTimer);
    this.#commitTimer = undefined;
    // A graceful close commits what finished (kafkajs' disconnect does not, kafkajs#507).
    await this.#flush();
    if (this.#watchdog) clearInterval(this.#watchdog);
    await this.#consumer?.disconnect().catch(() => undefined);
  }
}
