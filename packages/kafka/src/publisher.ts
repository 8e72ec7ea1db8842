import { BusbarError, ClosedError, PublishError, TimeoutError } from '@busbar/core';
import { type Deferred, deferred, type OutgoingRecord, withTimeout } from '@busbar/core/transport';
import type { CompressionTypes, Kafka, Message, Producer, TopicMessages } from 'kafkajs';
import { recordSize, toKafkaMessage, type WireHeaders } from './codec.js';
import { errorType, payloadTooLarge, toBusbarError } from './errors.js';
import { PartitionLedger } from './partitions.js';

interface Pending {
  readonly records: readonly OutgoingRecord[];
  readonly extra: WireHeaders | undefined;
  /** The partition to write to (a reply to `kafka_replyPartition`); else the key's, as the partitioner picks. */
  readonly partition: number | undefined;
  readonly size: number;
  readonly done: Deferred<void>;
  /** When the publish timeout of this call runs out (topic creation, queueing and sending included). */
  readonly deadline: number;
}

export interface PublisherConfig {
  readonly kafka: Kafka;
  readonly compression: CompressionTypes;
  readonly maxBatchBytes: number;
  /** The broker's limit as configured (`maxMessageBytes`), for the error when a topic refuses a record as too large. */
  readonly maxMessageBytes: number;
  readonly timeoutMs: number;
  readonly secrets: readonly string[];
  /** Creates the topics a batch needs (cached by the caller). */
  readonly ensureTopics: (topics: Iterable<string>) => Promise<void>;
  /** The topics that exist now (not cached). */
  readonly listTopics: () => Promise<string[]>;
  readonly onState: (state: 'up' | 'reconnecting', error?: unknown) => void;
}

/** After these the idempotent producer's sequence state is unusable (kafkajs#598): start a new producer. */
const FENCED = new Set([
  'OUT_OF_ORDER_SEQUENCE_NUMBER',
  'UNKNOWN_PRODUCER_ID',
  'INVALID_PRODUCER_EPOCH',
  'INVALID_PRODUCER_ID_MAPPING',
]);

/** One record of a send, and the publish call it belongs to. */
interface Sent {
  readonly pending: Pending;
  readonly topic: string;
  readonly message: Message;
}

function toTopicMessages(batch: readonly Pending[]): { topicMessages: TopicMessages[]; sent: Sent[] } {
  const byTopic = new Map<string, Message[]>();
  const sent: Sent[] = [];
  const now = Date.now();
  for (const pending of batch) {
    for (const record of pending.records) {
      let list = byTopic.get(record.topic);
      if (!list) {
        list = [];
        byTopic.set(record.topic, list);
      }
      const message = toKafkaMessage(record, pending.extra, now);
      if (pending.partition !== undefined) message.partition = pending.partition;
      list.push(message);
      sent.push({ pending, topic: record.topic, message });
    }
  }
  const topicMessages: TopicMessages[] = [];
  for (const [topic, messages] of byTopic) topicMessages.push({ topic, messages });
  return { topicMessages, sent };
}

/**
 * One idempotent producer (acks=all) fed by a queue: publishes that arrive
 * while a request is in flight are merged into the next `sendBatch`, so
 * concurrent callers share round trips. kafkajs' idempotent producer keeps one
 * produce request per broker in flight anyway, so merging loses nothing.
 */
/** The first pause before records kafkajs did not send go out again on a fresh producer; doubling. */
const UNACKED_PAUSE_MS = 50;

export class Publisher {
  readonly #config: PublisherConfig;
  #producer: Producer;
  #connected: Promise<void> | undefined;
  #queue: Pending[] = [];
  #inFlight = 0;
  #scheduled = false;
  #closed = false;
  #idle: Deferred<void> | undefined;
  /** Topics known to exist: publishes to them go straight to the queue. */
  readonly #topics = new Set<string>();
  /** Topics being created, each to its creation (shared by every publish that needs it meanwhile). */
  readonly #topicsMade = new Map<string, Promise<void>>();
  /** Publishes waiting for their topics to be created (close() flushes them too). */
  readonly #creating = new Set<Promise<void>>();
  #aborted = false;
  /** Rejected when the transport shuts down: what is still waiting on the broker then settles at once. */
  readonly #abort = deferred<never>();
  readonly #ledger = new PartitionLedger();
  /** Topics the current producer has sent to: kafkajs refreshes their metadata together, deleted ones too. */
  #producerTopics = new Set<string>();
  /** One of those was deleted: the next send starts a fresh producer. */
  #stale = false;

  constructor(config: PublisherConfig) {
    this.#config = config;
    this.#producer = this.#create();
    this.#abort.promise.catch(() => undefined);
  }

  #create(): Producer {
    const producer = this.#config.kafka.producer({
      createPartitioner: this.#ledger.partitioner,
      idempotent: true,
      maxInFlightRequests: 5,
      allowAutoTopicCreation: false,
      // The bus-level publish timeout bounds each send; kafkajs keeps retrying inside it, and not much
      // longer: a replaced producer's send must not retry in the background for ever.
      retry: { retries: Math.ceil(this.#config.timeoutMs / 2_000) + 5, initialRetryTime: 100, maxRetryTime: 2_000 },
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
  publish(records: readonly OutgoingRecord[], extra?: WireHeaders, partition?: number): Promise<void> {
    if (this.#closed) return Promise.reject(new ClosedError('The Kafka transport is closed'));
    let size = 0;
    let missing: Set<string> | undefined;
    for (const record of records) {
      size += recordSize(record);
      if (this.#topics.has(record.topic)) continue;
      missing ??= new Set();
      missing.add(record.topic);
    }
    const deadline = Date.now() + this.#config.timeoutMs;
    const pending: Pending = { records, extra, partition, size, done: deferred(), deadline };
    if (missing === undefined) this.#enqueue(pending);
    else this.#createThenEnqueue(pending, [...missing]);
    return pending.done.promise;
  }

  /**
   * Topics are created before the publish joins the queue, inside its timeout: a topic that is slow or
   * impossible to create holds up (and fails) only the publishes that need it, never the shared queue.
   */
  #createThenEnqueue(pending: Pending, topics: string[]): void {
    const creating = Promise.race([this.#ready(topics), this.#abort.promise]);
    const queued = withTimeout(creating, this.#config.timeoutMs, this.#timedOut()).then(
      () => {
        if (this.#aborted) pending.done.reject(new ClosedError('The Kafka transport is closed'));
        else this.#enqueue(pending);
      },
      (error: unknown) => pending.done.reject(this.#failure(error, [pending], topics)),
    );
    this.#creating.add(queued);
    void queued.finally(() => this.#creating.delete(queued));
  }

  /**
   * Resolves when `topics` exist. One wait (and one check of the producer's topics) per new topic, shared by
   * every publish that needs it meanwhile: the topology already shared the creation itself, but every publish
   * of a burst to a new topic ran its own topic listing (#checkGone) and joined the queue when its listing
   * came back, so 1,000 concurrent publishes made 1,000 listings and went out in sends of 1 to 100 records
   * instead of one of 1,000 (the first 15,000 records to a new topic went 3-4x slower).
   */
  #ready(topics: readonly string[]): Promise<unknown> {
    const fresh = topics.filter((topic) => !this.#topicsMade.has(topic));
    if (fresh.length > 0) {
      const made = this.#config
        .ensureTopics(fresh)
        .then(() => this.#checkGone())
        .then(() => {
          for (const topic of fresh) this.#topics.add(topic);
        });
      const forget = () => {
        for (const topic of fresh) if (this.#topicsMade.get(topic) === made) this.#topicsMade.delete(topic);
      };
      made.then(forget, forget);
      for (const topic of fresh) this.#topicsMade.set(topic, made);
    }
    return Promise.all(topics.map((topic) => this.#topicsMade.get(topic)));
  }

  /**
   * A kafkajs producer refreshes the metadata of every topic it ever sent to whenever one more joins, and a
   * deleted one (the reply topic of a requester that closed) fails that refresh with "unknown topic", which
   * kafkajs retries until the publish times out: the reply to the next new requester was lost that way, with
   * every publish queued behind it. So when a topic joins, the ones this producer knows are checked (one
   * topic listing per new topic); if one is gone, the next send starts on a fresh producer. Best effort: a
   * listing that fails changes nothing.
   */
  async #checkGone(): Promise<void> {
    if (this.#producerTopics.size === 0) return;
    let existing: Set<string>;
    try {
      existing = new Set(await this.#config.listTopics());
    } catch {
      return;
    }
    for (const topic of this.#producerTopics) {
      if (existing.has(topic)) continue;
      this.#topics.delete(topic);
      this.#stale = true;
    }
  }

  #enqueue(pending: Pending): void {
    this.#queue.push(pending);
    if (!this.#scheduled && this.#inFlight === 0) {
      this.#scheduled = true;
      setImmediate(() => this.#drain());
    }
  }

  #timedOut(): string {
    return `Publishing to Kafka timed out after ${this.#config.timeoutMs} ms`;
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
    const batch: Pending[] = [];
    const now = Date.now();
    for (const pending of this.#queue.splice(0, count)) {
      // Queued behind a slow request past its own deadline: never sent.
      if (pending.deadline <= now) pending.done.reject(new TimeoutError(this.#timedOut()));
      else batch.push(pending);
    }
    if (batch.length === 0) {
      this.#drain();
      return;
    }
    this.#inFlight++;
    this.#send(batch)
      .catch((error: unknown) => {
        const failure = toBusbarError(error, {
          what: 'Publishing to Kafka failed',
          op: 'publish',
          secrets: this.#config.secrets,
        });
        for (const pending of batch) pending.done.reject(failure);
      })
      .finally(() => {
        this.#inFlight--;
        if (this.#queue.length > 0) this.#drain();
        else if (this.#inFlight === 0) this.#idle?.resolve();
      });
  }

  /** Every publish of the batch settles: resolved once acknowledged, else rejected with a typed error. */
  async #send(all: Pending[], deadline = Math.min(...all.map((p) => p.deadline))): Promise<void> {
    let batch = all;
    const topics = [...new Set(batch.flatMap((pending) => pending.records.map((record) => record.topic)))];
    const timedOut = this.#timedOut();
    if (this.#stale) this.#replace();
    for (let attempt = 1; ; attempt++) {
      let sent = false;
      try {
        const { topicMessages, sent: records } = toTopicMessages(batch);
        for (const { topic } of topicMessages) this.#producerTopics.add(topic);
        // Reconnecting counts against the publish timeout too: the broker may be down.
        await withTimeout(
          Promise.race([this.connect(), this.#abort.promise]),
          Math.max(1, deadline - Date.now()),
          timedOut,
        );
        sent = true;
        const results = await withTimeout(
          Promise.race([
            this.#producer.sendBatch({ topicMessages, acks: -1, compression: this.#config.compression }),
            this.#abort.promise,
          ]),
          Math.max(1, deadline - Date.now()),
          timedOut,
        );
        this.#config.onState('up');
        // kafkajs can resolve a send that skipped the records of a partition whose leader moved (partitions.ts):
        // those publish calls are not confirmed; a fresh producer sends them again.
        const missing = this.#ledger.unacknowledged(records, results);
        if (missing.size === 0) {
          for (const pending of batch) pending.done.resolve();
          return;
        }
        // Linear in the send (a coalesced send holds up to 1,000 publish calls): no search per call.
        const unconfirmed = new Set<Pending>();
        for (const r of records) if (missing.has(r.message)) unconfirmed.add(r.pending);
        for (const pending of batch) if (!unconfirmed.has(pending)) pending.done.resolve();
        const again = [...unconfirmed];
        this.#replace();
        if (Date.now() >= deadline) {
          const failure = new PublishError(`${timedOut}: the broker did not acknowledge every partition`);
          for (const pending of again) pending.done.reject(failure);
          return;
        }
        batch = again;
        // Not at once: a moved leader takes a moment to be known, and a partition kafkajs skips for good (one that
        // does not exist) must not become a loop of fresh producers (connections) until the deadline.
        await new Promise((resolve) => setTimeout(resolve, Math.min(UNACKED_PAUSE_MS * 2 ** (attempt - 1), 1_000)));
      } catch (error) {
        const type = errorType(error);
        const fenced = type !== undefined && FENCED.has(type);
        if (type === 'UNKNOWN_TOPIC_OR_PARTITION') for (const topic of topics) this.#topics.delete(topic);
        // A failed send leaves the idempotent producer's sequence numbers wrong: kafkajs rolls them back
        // for every partition of the request, also those the broker wrote, and the broker then takes the
        // next batch of the same size to such a partition for a duplicate and drops it. A send that
        // outlived the timeout may be stuck on a dead connection kafkajs never notices. Start afresh.
        if (sent || BusbarError.is(error, 'BUSBAR_TIMEOUT')) this.#replace();
        // The broker refused the batch for its sequence numbers (kafkajs#598): a fresh producer sends it again.
        if (fenced && attempt < 3 && Date.now() < deadline) continue;
        // A kafkajs producer refreshes metadata for every topic it ever sent to, and one deleted since (a reply
        // topic of a requester that closed) fails that refresh, and so this send, with "unknown topic": a reply
        // to the next requester was lost that way. The fresh producer (replaced above) knows only these topics.
        if (type === 'UNKNOWN_TOPIC_OR_PARTITION' && sent && attempt === 1 && Date.now() < deadline) continue;
        if (BusbarError.is(error, 'BUSBAR_CLOSED')) {
          for (const pending of batch) pending.done.reject(error);
          return;
        }
        const failure = this.#failure(error, batch, topics);
        // One refused record (too large for its topic, a topic that cannot exist) must not fail the
        // unrelated publishes merged into the same request: each is sent on its own.
        if (batch.length > 1 && !failure.retryable && Date.now() < deadline) {
          for (const pending of batch) await this.#send([pending], Math.min(deadline, pending.deadline));
          return;
        }
        for (const pending of batch) pending.done.reject(failure);
        return;
      }
    }
  }

  #failure(error: unknown, batch: readonly Pending[], topics: readonly string[]): BusbarError {
    const type = errorType(error);
    const what = `Publishing to '${topics.join("', '")}' failed`;
    if (type === 'MESSAGE_TOO_LARGE' || type === 'RECORD_LIST_TOO_LARGE') {
      let size = 0;
      for (const pending of batch) size += pending.size;
      return payloadTooLarge(error, what, size, this.#config.maxMessageBytes, topics[0] ?? '', this.#config.secrets);
    }
    return toBusbarError(error, { what, op: 'publish', secrets: this.#config.secrets });
  }

  #replace(): void {
    const old = this.#producer;
    this.#producer = this.#create();
    this.#producerTopics = new Set();
    this.#stale = false;
    this.#connected = undefined;
    old.disconnect().catch(() => undefined);
  }

  /** Waits for queued publishes, then disconnects. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    await Promise.all(this.#creating);
    if (this.#inFlight > 0 || this.#queue.length > 0) {
      this.#idle = deferred();
      if (!this.#scheduled && this.#inFlight === 0) this.#drain();
      await this.#idle.promise;
    }
    await this.#producer.disconnect().catch(() => undefined);
  }

  /** The transport is shutting down: every publish still waiting fails now, and none is sent any more. */
  abort(): void {
    this.#closed = true;
    this.#aborted = true;
    this.#abort.reject(
      new ClosedError('The Kafka transport closed before the broker confirmed the publish (it may have been written)'),
    );
    for (const pending of this.#queue.splice(0)) pending.done.reject(new ClosedError('The Kafka transport is closed'));
    this.#idle?.resolve();
  }
}
