import { BusbarError, ClosedError } from '@busbar/core';
import { type Deferred, deferred, type OutgoingRecord, withTimeout } from '@busbar/core/transport';
import type { CompressionTypes, Kafka, Message, Producer, TopicMessages } from 'kafkajs';
import { recordSize, toKafkaMessage } from './codec.js';
import { errorType, toBusbarError } from './errors.js';

interface Pending {
  readonly records: readonly OutgoingRecord[];
  readonly extra: Readonly<Record<string, string>> | undefined;
  readonly size: number;
  readonly done: Deferred<void>;
}

export interface PublisherConfig {
  readonly kafka: Kafka;
  readonly compression: CompressionTypes;
  readonly maxBatchBytes: number;
  readonly timeoutMs: number;
  readonly secrets: readonly string[];
  /** Creates the topics a batch needs (cached by the caller). */
  readonly ensureTopics: (topics: Iterable<string>) => Promise<void>;
  readonly onState: (state: 'up' | 'reconnecting', error?: unknown) => void;
}

/** After these the idempotent producer's sequence state is unusable (kafkajs#598): start a new producer. */
const FENCED = new Set([
  'OUT_OF_ORDER_SEQUENCE_NUMBER',
  'UNKNOWN_PRODUCER_ID',
  'INVALID_PRODUCER_EPOCH',
  'INVALID_PRODUCER_ID_MAPPING',
]);

/**
 * One idempotent producer (acks=all) fed by a queue: publishes that arrive
 * while a request is in flight are merged into the next `sendBatch`, so
 * concurrent callers share round trips. kafkajs' idempotent producer keeps one
 * produce request per broker in flight anyway, so merging loses nothing.
 */
export class Publisher {
  readonly #config: PublisherConfig;
  #producer: Producer;
  #connected: Promise<void> | undefined;
  #queue: Pending[] = [];
  #inFlight = 0;
  #scheduled = false;
  #closed = false;
  #idle: Deferred<void> | undefined;

  constructor(config: PublisherConfig) {
    this.#config = config;
    this.#producer = this.#create();
  }

  #create(): Producer {
    const producer = this.#config.kafka.producer({
      idempotent: true,
      maxInFlightRequests: 5,
      allowAutoTopicCreation: false,
      // The bus-level publish timeout bounds each send; kafkajs keeps retrying inside it.
      retry: { retries: Number.MAX_SAFE_INTEGER, initialRetryTime: 100, maxRetryTime: 2_000 },
    });
    producer.on(producer.events.DISCONNECT, () => {
      if (!this.#closed) this.#config.onState('reconnecting');
    });
    return producer;
  }

  connect(): Promise<void> {
    this.#connected ??= this.#producer.connect().then(
      () => this.#config.onState('up'),
      (error: unknown) => {
        this.#connected = undefined;
        throw error;
      },
    );
    return this.#connected;
  }

  /** Resolves when every record is acknowledged by all in-sync replicas. */
  publish(records: readonly OutgoingRecord[], extra?: Readonly<Record<string, string>>): Promise<void> {
    if (this.#closed) return Promise.reject(new ClosedError('The Kafka transport is closed'));
    let size = 0;
    for (const record of records) size += recordSize(record);
    const done = deferred();
    this.#queue.push({ records, extra, size, done });
    if (!this.#scheduled && this.#inFlight === 0) {
      this.#scheduled = true;
      setImmediate(() => this.#drain());
    }
    return done.promise;
  }

  #drain(): void {
    this.#scheduled = false;
    if (this.#inFlight > 0 || this.#queue.length === 0) return;
    // Take whole publish calls up to the batch byte limit (at least one call, however big).
    let bytes = 0;
    let count = 0;
    while (count < this.#queue.length) {
      const next = this.#queue[count] as Pending;
      if (count > 0 && bytes + next.size > this.#config.maxBatchBytes) break;
      bytes += next.size;
      count++;
    }
    const batch = this.#queue.splice(0, count);
    this.#inFlight++;
    this.#send(batch).finally(() => {
      this.#inFlight--;
      if (this.#queue.length > 0) this.#drain();
      else if (this.#inFlight === 0) this.#idle?.resolve();
    });
  }

  async #send(batch: Pending[]): Promise<void> {
    const byTopic = new Map<string, Message[]>();
    const now = Date.now();
    for (const pending of batch) {
      for (const record of pending.records) {
        let list = byTopic.get(record.topic);
        if (!list) {
          list = [];
          byTopic.set(record.topic, list);
        }
        list.push(toKafkaMessage(record, pending.extra, now));
      }
    }
    const topicMessages: TopicMessages[] = [];
    for (const [topic, messages] of byTopic) topicMessages.push({ topic, messages });
    const deadline = Date.now() + this.#config.timeoutMs;
    for (let attempt = 1; ; attempt++) {
      try {
        await this.#config.ensureTopics(byTopic.keys());
        await this.connect();
        await withTimeout(
          this.#producer.sendBatch({ topicMessages, acks: -1, compression: this.#config.compression }),
          Math.max(1, deadline - Date.now()),
          `Publishing to Kafka timed out after ${this.#config.timeoutMs} ms`,
        );
        this.#config.onState('up');
        for (const pending of batch) pending.done.resolve();
        return;
      } catch (error) {
        const type = errorType(error);
        const fenced = type !== undefined && FENCED.has(type);
        // A send that outlived the publish timeout may be stuck on a dead connection kafkajs never notices.
        if (fenced || BusbarError.is(error, 'BUSBAR_TIMEOUT')) this.#replace();
        // The broker refused the batch for its sequence numbers (kafkajs#598): a fresh producer sends it again.
        if (fenced && attempt < 3 && Date.now() < deadline) continue;
        const topics = [...byTopic.keys()];
        const failure = toBusbarError(
          error,
          `Publishing to '${topics.join("', '")}' failed`,
          this.#config.secrets,
          topics[0],
        );
        for (const pending of batch) pending.done.reject(failure);
        return;
      }
    }
  }

  #replace(): void {
    const old = this.#producer;
    this.#producer = this.#create();
    this.#connected = undefined;
    old.disconnect().catch(() => undefined);
  }

  /** Waits for queued publishes, then disconnects. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    if (this.#inFlight > 0 || this.#queue.length > 0) {
      this.#idle = deferred();
      if (!this.#scheduled && this.#inFlight === 0) this.#drain();
      await this.#idle.promise;
    }
    await this.#producer.disconnect().catch(() => undefined);
  }
}
