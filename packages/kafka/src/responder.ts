import { randomUUID } from 'node:crypto';
import type {
  IncomingRequest,
  OutgoingRecord,
  ReplyRecord,
  RespondSpec,
  TransportSubscription,
} from '@busbar/core/transport';
import { deferred, sanitizeError, withTimeout } from '@busbar/core/transport';
import type { Consumer, EachBatchPayload, KafkaMessage } from 'kafkajs';
import { busbarAssigners } from './assigner.js';
import { decode, headerBytes, REPLY_HEADER } from './codec.js';
import type { ConsumerDeps } from './consumer.js';
import { groupTimings } from './native.js';
import { isLegalTopic } from './topology.js';

/** A responder needs what a subscription needs, except its connection-state reporting. */
export type ResponderDeps = Omit<ConsumerDeps, 'reportState' | 'forgetState'>;

/** The native record of a request (`IncomingRequest.raw` for Kafka). */
export interface KafkaRequestRecord {
  readonly topic: string;
  readonly partition: number;
  readonly offset: string;
  readonly replyTopic: string;
  /** The correlation id as sent: copied unchanged into the reply (Spring's are binary). */
  readonly correlationId: Buffer;
  readonly replyPartition: number | undefined;
}

/** Bounds the partition lookup of a group leader's assignment. */
const ASSIGN_LOOKUP_MS = 5_000;

/**
 * One responder: a consumer of the request topic in the group `spec.group` (a group of its own without one),
 * at most `prefetch` requests unanswered at once. Each reply is produced to the request's reply topic with
 * its correlation id (and partition, when the request names one). Requests are handed over at most once:
 * offsets move on as they are taken (by the time another member could get one again, its requester has
 * given up).
 */
export class KafkaResponder implements TransportSubscription {
  readonly #spec: RespondSpec;
  readonly #onRequest: (request: IncomingRequest) => void;
  readonly #onError: (error: Error) => void;
  readonly #d: ResponderDeps;
  readonly #groupId: string;
  readonly #shared: boolean;
  readonly #joined = deferred();
  #consumer: Consumer | undefined;
  #unanswered = 0;
  #waiters: (() => void)[] = [];
  #stopped = false;

  constructor(
    spec: RespondSpec,
    callbacks: { readonly onRequest: (request: IncomingRequest) => void; readonly onError: (error: Error) => void },
    deps: ResponderDeps,
  ) {
    this.#spec = spec;
    this.#onRequest = callbacks.onRequest;
    this.#onError = callbacks.onError;
    this.#d = deps;
    this.#shared = spec.group !== undefined;
    this.#groupId = spec.group ?? `busbar-responder-${randomUUID()}`;
    this.#joined.promise.catch(() => undefined);
  }

  /** Resolves once the group has joined and its start offsets are fixed: requests sent from then on are served. */
  async start(): Promise<void> {
    const { kafka, options: o, topology } = this.#d;
    const topic = this.#spec.topic;
    await topology.ensureTopics([topic]);
    const c = kafka.consumer({
      groupId: this.#groupId,
      // busbar's protocols, so a responder group can share a Kafka group with busbar subscriptions and Java members.
      partitionAssigners: busbarAssigners({
        partitions: (topics) => withTimeout(topology.partitions(topics), ASSIGN_LOOKUP_MS, 'partition metadata'),
        warn: (message) => this.#d.logger.warn(message),
      }),
      ...groupTimings(o),
      retry: { retries: 5 },
    });
    this.#consumer = c;
    c.on(c.events.GROUP_JOIN, (event) => {
      this.#position(c, event.payload.memberAssignment[topic] ?? []).then(
        () => this.#joined.resolve(),
        (error: unknown) => {
          this.#d.logger.warn(`Kafka responder on '${topic}': fixing the start offsets failed`, {
            error: sanitizeError(error, this.#d.secrets),
          });
          this.#joined.reject(error);
        },
      );
    });
    c.on(c.events.CRASH, (event) => {
      if (event.payload.restart) return;
      const error = sanitizeError(event.payload.error, this.#d.secrets);
      this.#joined.reject(error);
      this.#onError(error);
    });
    await c.connect();
    await c.subscribe({ topics: [topic], fromBeginning: false });
    await c.run({
      // A shared group commits where it is, so a member that takes over a partition starts there.
      autoCommit: this.#shared,
      autoCommitInterval: 1_000,
      eachBatchAutoResolve: false,
      eachBatch: (payload) => this.#eachBatch(payload),
    });
    await withTimeout(this.#joined.promise, this.#d.joinTimeoutMs, `joining the responder group on '${topic}'`);
  }

  /** A group with no committed offset starts at the end (committed at once when shared, for later members). */
  async #position(c: Consumer, assigned: readonly number[]): Promise<void> {
    const { topology } = this.#d;
    const topic = this.#spec.topic;
    const missing = this.#shared ? await topology.uncommitted(this.#groupId, topic) : [...assigned];
    if (missing.length === 0) return;
    const end = await topology.endOffsets(topic);
    const offsets = missing.map((partition) => ({ topic, partition, offset: end.get(partition) ?? '0' }));
    if (this.#shared) await c.commitOffsets(offsets);
    for (const offset of offsets) if (assigned.includes(offset.partition)) c.seek(offset);
  }

  async #eachBatch({ batch, resolveOffset, heartbeat, isRunning, isStale }: EachBatchPayload): Promise<void> {
    for (const message of batch.messages) {
      if (this.#stopped || !isRunning() || isStale()) return;
      while (this.#unanswered >= this.#spec.prefetch) {
        await this.#waitForRoom();
        if (this.#stopped || !isRunning() || isStale()) return;
        await heartbeat();
      }
      this.#take(batch.partition, message);
      resolveOffset(message.offset);
    }
  }

  #take(partition: number, message: KafkaMessage): void {
    const topic = this.#spec.topic;
    const replyTopic = headerBytes(message.headers, REPLY_HEADER.replyTopic)?.toString('utf8');
    const correlationId = headerBytes(message.headers, REPLY_HEADER.correlationId);
    if (replyTopic === undefined || correlationId === undefined || !isLegalTopic(replyTopic)) {
      this.#d.logger.warn(
        `A request on '${topic}' has no usable ${REPLY_HEADER.replyTopic} or correlation id; dropped`,
        {
          partition,
          offset: message.offset,
        },
      );
      return;
    }
    const partitionBytes = headerBytes(message.headers, REPLY_HEADER.replyPartition);
    const raw: KafkaRequestRecord = {
      topic,
      partition,
      offset: message.offset,
      replyTopic,
      correlationId,
      replyPartition: partitionBytes?.length === 4 ? partitionBytes.readInt32BE(0) : undefined,
    };
    const record = decode(topic, partition, message, false);
    const headers = { ...record.headers };
    for (const name of Object.values(REPLY_HEADER)) delete headers[name];
    this.#unanswered++;
    this.#onRequest({
      id: record.id,
      topic,
      headers,
      body: record.body,
      contentType: record.contentType,
      timestamp: record.timestamp,
      raw,
      reply: async (reply: ReplyRecord) => {
        try {
          await this.#send(raw, reply);
        } finally {
          this.#unanswered--;
          for (const wake of this.#waiters.splice(0)) wake();
        }
      },
    });
  }

  /** A reply topic that does not exist belongs to a requester that is gone: the reply is dropped, nothing created. */
  async #send(raw: KafkaRequestRecord, reply: ReplyRecord): Promise<void> {
    if (!(await this.#d.topology.exists(raw.replyTopic))) {
      this.#d.logger.debug(`The reply topic '${raw.replyTopic}' does not exist (its requester is gone); reply dropped`);
      return;
    }
    if (raw.replyPartition !== undefined && !(await this.#partitionExists(raw.replyTopic, raw.replyPartition))) {
      // kafkajs would skip a partition it does not know without a word, and the publisher would try again until its
      // timeout, holding back every publish behind it: the reply cannot arrive, so it is dropped now.
      this.#d.logger.warn(
        `A request on '${raw.topic}' asks for a reply on partition ${raw.replyPartition} of '${raw.replyTopic}', which does not exist; reply dropped`,
      );
      return;
    }
    const record: OutgoingRecord = {
      topic: raw.replyTopic,
      id: '',
      key: undefined,
      headers: reply.headers,
      body: reply.body,
      contentType: reply.contentType ?? '',
      timestamp: Date.now(),
    };
    await this.#d.publisher.publish([record], { [REPLY_HEADER.correlationId]: raw.correlationId }, raw.replyPartition);
  }

  /** Partition counts of reply topics, looked up once a minute at most (a reply topic rarely grows). */
  readonly #partitionCounts = new Map<string, { count: number; until: number }>();

  async #partitionExists(topic: string, partition: number): Promise<boolean> {
    if (!Number.isInteger(partition) || partition < 0) return false;
    let known = this.#partitionCounts.get(topic);
    if (known === undefined || known.until < Date.now() || partition >= known.count) {
      const found = await withTimeout(this.#d.topology.partitions([topic]), ASSIGN_LOOKUP_MS, 'partition metadata');
      if (this.#partitionCounts.size >= 1_000) this.#partitionCounts.clear();
      known = { count: found.get(topic)?.length ?? 0, until: Date.now() + 60_000 };
      this.#partitionCounts.set(topic, known);
    }
    return partition < known.count;
  }

  #waitForRoom(): Promise<void> {
    return new Promise<void>((resolve) => {
      const timer = setTimeout(resolve, this.#d.options.heartbeatIntervalMs);
      this.#waiters.push(() => {
        clearTimeout(timer);
        resolve();
      });
    });
  }

  async stop(): Promise<void> {
    if (this.#stopped) return;
    this.#stopped = true;
    for (const wake of this.#waiters.splice(0)) wake();
    try {
      this.#consumer?.pause([{ topic: this.#spec.topic }]);
    } catch {
      // Not running (it crashed): nothing to pause.
    }
  }

  async close(): Promise<void> {
    await this.stop();
    const consumer = this.#consumer;
    this.#consumer = undefined;
    if (consumer) {
      await withTimeout(consumer.disconnect(), this.#d.closeTimeoutMs, 'disconnect').catch(() => undefined);
    }
  }
}
