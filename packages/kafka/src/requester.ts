import { randomUUID } from 'node:crypto';
import { ClosedError, NoRespondersError } from '@busbar/core';
import type { Logger, OutgoingRecord, ReplyRecord } from '@busbar/core/transport';
import { deferred, PendingReplies, sanitizeError, withTimeout } from '@busbar/core/transport';
import type { Consumer, EachBatchPayload, Kafka } from 'kafkajs';
import { decodeReply, headerBytes, REPLY_HEADER } from './codec.js';
import { toBusbarError } from './errors.js';
import { groupTimings } from './native.js';
import type { KafkaOptions } from './options.js';
import type { Publisher } from './publisher.js';
import type { Topology } from './topology.js';

export interface RequesterDeps {
  readonly kafka: Kafka;
  readonly options: KafkaOptions;
  readonly topology: Topology;
  readonly publisher: Publisher;
  readonly busName: string;
  readonly logger: Logger;
  readonly secrets: readonly string[];
  /** Bounds opening the reply topic's consumer (its group join), on top of each request's own timeout. */
  readonly joinTimeoutMs: number;
}

/** `<bus name>.replies.<uuid>`, with what Kafka does not allow in a topic name replaced. */
function replyTopicName(busName: string): string {
  const base = busName.replace(/[^A-Za-z0-9._-]/g, '_').slice(0, 180) || 'busbar';
  return `${base}.replies.${randomUUID()}`;
}

/**
 * The requesting side, as Spring's ReplyingKafkaTemplate does it: one reply topic per transport (the
 * `replyTopic` option, or `<bus name>.replies.<uuid>` created at the first request and deleted at close),
 * read by one consumer of a group of its own that never commits. Requests carry the reply topic and a
 * correlation id in headers and wait in a map by correlation id; nothing per request outlives it but its
 * map entry, timer and abort listener, all removed when it settles. A reply nobody waits for (late, or not
 * ours) is dropped and counted.
 */
export class Requester {
  readonly replyTopic: string;
  readonly #d: RequesterDeps;
  readonly #ownTopic: boolean;
  readonly #pending = new PendingReplies('Kafka');
  #started: Promise<void> | undefined;
  #consumer: Consumer | undefined;
  #created = false;

  constructor(deps: RequesterDeps) {
    this.#d = deps;
    this.#ownTopic = deps.options.replyTopic === undefined;
    this.replyTopic = deps.options.replyTopic ?? replyTopicName(deps.busName);
  }

  /** Replies that came when nobody waited for them any more (late ones), since the transport started. */
  get lateReplies(): number {
    return this.#pending.late;
  }

  request(record: OutgoingRecord, options: { timeoutMs: number; signal?: AbortSignal }): Promise<ReplyRecord> {
    const correlationId = this.#pending.nextId();
    return this.#pending.open(correlationId, record.topic, options, undefined, () => this.#send(record, correlationId));
  }

  async #send(record: OutgoingRecord, correlationId: string): Promise<void> {
    await this.#start();
    // A responder creates its request topic before it serves: without the topic nobody can answer.
    let served: boolean;
    try {
      served = await this.#d.topology.exists(record.topic);
    } catch (error) {
      throw toBusbarError(error, { what: 'Looking for responders failed', op: 'request', secrets: this.#d.secrets });
    }
    if (!served) throw new NoRespondersError(record.topic);
    // Sent even when the caller gave up meanwhile (the first request waits for the reply consumer's group
    // join): a request once made goes out, as on brokers whose publish is synchronous; its reply is dropped.
    await this.#d.publisher.publish([record], {
      [REPLY_HEADER.replyTopic]: this.replyTopic,
      [REPLY_HEADER.correlationId]: correlationId,
    });
  }

  #start(): Promise<void> {
    this.#started ??= this.#open().catch((error: unknown) => {
      // The next request tries again.
      this.#started = undefined;
      throw toBusbarError(error, {
        what: `Opening the reply topic '${this.replyTopic}' failed`,
        op: 'request',
        secrets: this.#d.secrets,
      });
    });
    return this.#started;
  }

  /**
   * Creates the reply topic (one partition: replies need no parallelism) and starts its consumer. Resolves
   * once the consumer's position is fixed at the topic's end, before the first request goes out, so no
   * reply can land before where the consumer starts reading.
   */
  async #open(): Promise<void> {
    const { kafka, options: o, topology } = this.#d;
    await topology.ensureTopics([this.replyTopic], 1);
    if (this.#ownTopic) this.#created = true;
    const joined = deferred();
    joined.promise.catch(() => undefined);
    const c = kafka.consumer({
      groupId: `busbar-replies-${randomUUID()}`,
      ...groupTimings(o),
      retry: { retries: 5 },
    });
    this.#consumer = c;
    c.on(c.events.GROUP_JOIN, (event) => {
      const partitions = event.payload.memberAssignment[this.replyTopic] ?? [];
      topology.endOffsets(this.replyTopic).then(
        (end) => {
          for (const partition of partitions) {
            c.seek({ topic: this.replyTopic, partition, offset: end.get(partition) ?? '0' });
          }
          joined.resolve();
        },
        (error: unknown) => joined.reject(error),
      );
    });
    c.on(c.events.CRASH, (event) => {
      if (event.payload.restart) return;
      joined.reject(event.payload.error);
      // Requests waiting now time out; the next one opens a new consumer.
      if (this.#consumer === c) {
        this.#consumer = undefined;
        this.#started = undefined;
      }
      this.#d.logger.warn(`The Kafka reply consumer on '${this.replyTopic}' stopped`, {
        error: sanitizeError(event.payload.error, this.#d.secrets),
      });
    });
    try {
      await c.connect();
      await c.subscribe({ topics: [this.replyTopic], fromBeginning: false });
      await c.run({ autoCommit: false, eachBatch: (payload) => this.#eachBatch(payload) });
      await withTimeout(joined.promise, this.#d.joinTimeoutMs, 'joining the reply consumer group timed out');
    } catch (error) {
      await c.disconnect().catch(() => undefined);
      throw error;
    }
    if (this.#pending.closed) {
      await c.disconnect().catch(() => undefined);
      throw new ClosedError('The Kafka transport is closed: request rejected');
    }
  }

  async #eachBatch({ batch }: EachBatchPayload): Promise<void> {
    for (const message of batch.messages) {
      const correlation = headerBytes(message.headers, REPLY_HEADER.correlationId)?.toString('utf8');
      if (correlation !== undefined && this.#pending.resolve(correlation, decodeReply(message))) continue;
      this.#d.logger.debug(`A reply on '${this.replyTopic}' came after its request ended; dropped`, {
        dropped: this.#pending.late,
      });
    }
  }

  /** Rejects every pending request, stops the reply consumer and deletes the reply topic busbar made (bounded). */
  async close(deadline: number): Promise<void> {
    if (this.#pending.closed) return;
    this.#pending.close();
    const left = () => Math.max(1, deadline - Date.now());
    // An opening under way finishes first (bounded), so the topic it creates is deleted too.
    if (this.#started) await withTimeout(this.#started, left(), 'open').catch(() => undefined);
    const consumer = this.#consumer;
    this.#consumer = undefined;
    if (consumer) await withTimeout(consumer.disconnect(), left(), 'disconnect').catch(() => undefined);
    if (this.#created) {
      await withTimeout(this.#d.topology.deleteTopic(this.replyTopic, left()), left(), 'delete').catch(
        (error: unknown) =>
          this.#d.logger.warn(`Deleting the reply topic '${this.replyTopic}' failed; delete it by hand`, {
            error: sanitizeError(error, this.#d.secrets),
          }),
      );
    }
  }
}
