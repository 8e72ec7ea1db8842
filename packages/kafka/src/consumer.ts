import { randomUUID } from 'node:crypto';
import type { Logger, SubscribeCallbacks, SubscribeSpec, TransportSubscription } from '@busbar/core/transport';
import { deferred, HEADER, numericHeader, sanitizeError, wireHeaderValue, withTimeout } from '@busbar/core/transport';
import type { Consumer, EachBatchPayload, Kafka, PartitionAssigner } from 'kafkajs';
import { busbarAssigners, PROTOCOLS } from './assigner.js';
import { decode } from './codec.js';
import { Committer } from './commits.js';
import { KafkaDelivery, type SettleHost } from './delivery.js';
import { errorType, groupProtocolError, missingCodec } from './errors.js';
import { RetiredConsumers, startConsumer } from './native.js';
import type { KafkaOptions } from './options.js';
import type { Publisher } from './publisher.js';
import { publishRetry } from './retry.js';
import { isDeadLetterReader, kafkaGroupId, retryTopicFor, type Topology } from './topology.js';
import type { PartitionTracker, TrackedOffset } from './tracker.js';

/** Bounds the partition lookup of a group leader's assignment (other members' topics). */
const ASSIGN_LOOKUP_MS = 5_000;

/** A released record is handed to core again after this, doubling per release of the same record. */
const RELEASE_DELAY_MS = 500;
const RELEASE_MAX_DELAY_MS = 30_000;

export interface ConsumerDeps {
  readonly kafka: Kafka;
  readonly options: KafkaOptions;
  readonly topology: Topology;
  readonly publisher: Publisher;
  readonly logger: Logger;
  readonly secrets: readonly string[];
  readonly joinTimeoutMs: number;
  /** Bounds close(): the final commit and the disconnect together. */
  readonly closeTimeoutMs: number;
  readonly reportState: (
    connection: string,
    state: 'connecting' | 'up' | 'reconnecting' | 'down',
    error?: unknown,
  ) => void;
  /** The consumer closed on purpose: its connection leaves the bus's health and metrics. */
  readonly forgetState?: (connection: string) => void;
}

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
  readonly #retired = new RetiredConsumers();
  readonly #name: string;
  readonly #commits: Committer;
  readonly #holds = new Map<number, NodeJS.Timeout>();
  /** Released records waiting to be handed to core again. */
  readonly #redeliveries = new Map<NodeJS.Timeout, TrackedOffset>();
  #waiters: (() => void)[] = [];
  #unsettled = 0;
  #stopping = false;
  #positioned = false;
  readonly #joined = deferred();
  readonly #assigners: PartitionAssigner[];

  constructor(spec: SubscribeSpec, callbacks: SubscribeCallbacks, deps: ConsumerDeps) {
    this.#spec = spec;
    this.#callbacks = callbacks;
    this.#deps = deps;
    this.#broadcast = spec.group === undefined;
    this.#groupId =
      spec.group === undefined ? `busbar-broadcast-${randomUUID()}` : kafkaGroupId(spec.topic, spec.group);
    this.retryTopic = spec.group === undefined ? undefined : retryTopicFor(spec.topic, spec.group);
    this.#name = `consumer ${spec.topic} (${spec.group ?? 'broadcast'})`;
    this.#assigners = busbarAssigners({
      partitions: (topics) => withTimeout(deps.topology.partitions(topics), ASSIGN_LOOKUP_MS, 'partition metadata'),
      warn: (message) => deps.logger.warn(message),
    });
    // Awaited (raced) in start(); a crash after that must not surface as an unhandled rejection.
    this.#joined.promise.catch(() => undefined);
    this.#commits = new Committer({
      name: this.#name,
      intervalMs: deps.options.commitIntervalMs,
      logger: deps.logger,
      secrets: deps.secrets,
      consumer: () => this.#consumer,
    });
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
      assigners: this.#assigners,
    };
    return startConsumer(this.#deps.kafka, this.#groupId, this.#deps.options, topics, {
      onCreated: (c) => {
        this.#consumer = c;
      },
      onJoin: (c, assignment) => {
        if (c === this.#consumer) this.#onJoin(c, assignment);
      },
      onRebalancing: () => {
        if (!this.#broadcast) void this.#commits.flush();
      },
      onActivity: () => {
        this.#lastActivity = Date.now();
      },
      onCrash: (crash, restart) => {
        const error =
          errorType(crash) === 'INCONSISTENT_GROUP_PROTOCOL'
            ? groupProtocolError(this.#groupId, PROTOCOLS, sanitizeError(crash, this.#deps.secrets))
            : (missingCodec(crash, this.#spec.topic) ?? crash);
        const clean = sanitizeError(error, this.#deps.secrets);
        this.#deps.reportState(this.#name, restart ? 'reconnecting' : 'down', clean);
        if (!restart) {
          this.#joined.reject(error);
          this.#callbacks.onError(clean);
        }
      },
      eachBatch: (c, payload) => (c === this.#consumer ? this.#eachBatch(c, payload) : Promise.resolve()),
      retired: this.#retired,
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
    if (old) this.#retired.retire(old);
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
    // Partitions lost in the rebalance are never committed again (their new owner reads from the last commit).
    for (const tracker of this.#commits.assign(assignment)) {
      // kafkajs restarts kept partitions from the committed offset: continue after what core already holds.
      if (tracker.fetchNext !== undefined) {
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
    const tracker = this.#commits.tracker(topic, partition);
    const prefetch = this.#spec.prefetch;
    // The fetch position moves past what core holds. Told to kafkajs before every wait and on every way out,
    // not per message: each resolveOffset parses the offset into a Long (a visible share of consume).
    let admitted: string | undefined;
    const resolve = () => {
      if (admitted !== undefined) resolveOffset(admitted);
      admitted = undefined;
    };
    // isStale() builds a string key per call (kafkajs seekOffsets): ask it at the start and after an
    // await, not per message.
    let checked = false;
    try {
      for (const message of batch.messages) {
        if (this.#stopping || c !== this.#consumer) return;
        if (!checked) {
          if (!isRunning() || isStale()) return;
          checked = true;
        }
        if (fromRetry) {
          // The clock is read once: a second read for the timer's length could make it negative.
          const wait = numericHeader(wireHeaderValue(message.headers?.[HEADER.due]), 0) - Date.now();
          if (wait > 0) {
            this.#hold(partition, wait, pause);
            return;
          }
        }
        if (this.#unsettled >= prefetch) {
          resolve();
          while (this.#unsettled >= prefetch) {
            await this.#waitForRoom();
            if (this.#stopping || !isRunning() || isStale() || c !== this.#consumer) return;
            await heartbeat();
          }
          checked = false;
        }
        const entry = tracker.add(Number(message.offset));
        admitted = message.offset;
        this.#unsettled++;
        this.#callbacks.onDelivery(
          new KafkaDelivery(decode(topic, partition, message, fromRetry), this, tracker, entry),
        );
      }
    } finally {
      resolve();
    }
  }

  /** The retry topic partition waits for its next due message without holding up the main topic. */
  #hold(partition: number, waitMs: number, pause: () => () => void): void {
    if (this.#holds.has(partition)) return;
    const resume = pause();
    const timer = setTimeout(
      () => {
        this.#holds.delete(partition);
        if (!this.#stopping) resume();
      },
      Math.min(waitMs, 2_147_483_647),
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

  /** From KafkaDelivery: one delivery settled (acked, retried, dead-lettered) or released (`released`). */
  settled(tracker: PartitionTracker, entry: TrackedOffset, released: KafkaDelivery | undefined): void {
    this.#unsettled--;
    // Wake the fetch loop at a low-water mark, not on every settle: admitting one message per ack cost a
    // timer and a heartbeat each and left the drain half idle (bench finding).
    if (this.#waiters.length > 0 && this.#unsettled <= Math.floor(this.#spec.prefetch / 2)) {
      const waiters = this.#waiters;
      this.#waiters = [];
      for (const wake of waiters) wake();
    }
    if (released) {
      if (this.#broadcast || this.#stopping || !this.#commits.owns(tracker)) entry.released = true;
      else this.#redeliver(released, tracker, entry);
      return;
    }
    entry.done = true;
    // Broadcast offsets are tracked (to free memory) but never committed.
    if (tracker.advance() && !this.#broadcast) this.#commits.soon();
  }

  /**
   * Gives a released record back to core within this consumer: that record alone, after a backoff. (A
   * seek back ran every later record of the partition again, at once, and in a loop when the release
   * repeated.) It keeps its place in the partition, so nothing is committed past it meanwhile.
   */
  #redeliver(delivery: KafkaDelivery, tracker: PartitionTracker, entry: TrackedOffset): void {
    entry.releases = (entry.releases ?? 0) + 1;
    const delay = Math.min(RELEASE_MAX_DELAY_MS, RELEASE_DELAY_MS * 2 ** Math.min(entry.releases - 1, 10));
    const timer = setTimeout(() => {
      this.#redeliveries.delete(timer);
      // Closing, or the partition moved to another member (which reads it again from the last commit).
      if (this.#stopping || !this.#commits.owns(tracker)) {
        entry.released = true;
        return;
      }
      this.#unsettled++;
      this.#callbacks.onDelivery(delivery.again());
    }, delay);
    this.#redeliveries.set(timer, entry);
  }

  /** From KafkaDelivery: schedule a retry on the group's retry topic. */
  scheduleRetry(delivery: KafkaDelivery, delayMs: number, attempt: number, headers: Readonly<Record<string, string>>) {
    if (this.retryTopic === undefined) return Promise.reject(new Error('A broadcast subscription has no retry topic'));
    return publishRetry(this.#deps.publisher, this.retryTopic, delivery, delayMs, attempt, headers);
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
    for (const [timer, entry] of this.#redeliveries) {
      clearTimeout(timer);
      entry.released = true;
    }
    this.#redeliveries.clear();
    for (const wake of this.#waiters.splice(0)) wake();
    try {
      this.#pauseAll();
    } catch {
      // Not running (it crashed): nothing to pause.
    }
  }

  async close(): Promise<void> {
    await this.stop();
    // A graceful close commits what finished (kafkajs' disconnect does not, kafkajs#507).
    // Both are bounded: with the broker gone kafkajs retries for a long time, and a close must end.
    const deadline = Date.now() + this.#deps.closeTimeoutMs;
    const left = () => Math.max(1, deadline - Date.now());
    if (!this.#broadcast) await withTimeout(this.#commits.close(), left(), 'final commit').catch(() => undefined);
    if (this.#watchdog) clearInterval(this.#watchdog);
    await withTimeout(this.#consumer?.disconnect() ?? Promise.resolve(), left(), 'disconnect').catch(() => undefined);
    this.#deps.forgetState?.(this.#name);
  }
}
