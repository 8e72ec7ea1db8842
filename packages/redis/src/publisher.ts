import { ClosedError, PublishError } from '@busbar/core';
import { Coalescer, type OutgoingRecord, withTimeout } from '@busbar/core/transport';
import type { RedisClient } from './client.js';
import { pushEntryFields } from './codec.js';
import { toBusbarError } from './errors.js';
import { streamKey } from './keys.js';

/** XADDs per explicit pipeline. */
const PIPELINE = 100;

export interface PublisherInit {
  readonly client: RedisClient;
  readonly keyPrefix: string;
  readonly maxLen: number | undefined;
  readonly maxAgeMs: number | undefined;
  /** Replicas that must have the entries before a publish resolves (WAIT); 0: the primary's reply is enough. */
  readonly waitReplicas: number;
  readonly waitTimeoutMs: number;
  readonly publishTimeoutMs: number;
  readonly secrets: readonly string[];
}

/**
 * `publish(records)`: one XADD per record, resolved once Redis answered every one. Single publishes of the
 * same turn are coalesced and auto-pipelined; a batch goes as explicit pipelines.
 */
export class Publisher {
  readonly #i: PublisherInit;
  readonly #coalescer: Coalescer<OutgoingRecord>;
  #closed = false;
  /** Counts the command connection's closes: a WAIT on a later connection covers none of an earlier one's writes. */
  #connection = 0;

  constructor(init: PublisherInit) {
    this.#i = init;
    this.#coalescer = new Coalescer((records) => this.#flush(records), 1_000);
    if (init.waitReplicas > 0) init.client.on('close', () => void this.#connection++);
  }

  publish(records: readonly OutgoingRecord[]): Promise<void> {
    if (this.#closed) return Promise.reject(new ClosedError('The Redis transport is closed'));
    if (records.length === 1) return this.#coalescer.submit(records[0] as OutgoingRecord);
    return this.#flush(records);
  }

  close(): void {
    this.#closed = true;
  }

  /**
   * A batch for one topic as explicit pipelines (one promise per pipeline, and one slot in a cluster),
   * coalesced single publishes auto-pipelined. After a reconnect ioredis re-sends XADDs whose reply was
   * lost, so an entry can be written twice; it keeps its busbar id, and idempotent consumers drop the copy.
   */
  async #flush(records: readonly OutgoingRecord[]): Promise<void> {
    const { client, publishTimeoutMs } = this.#i;
    const now = Date.now();
    const connection = this.#connection;
    const first = records[0] as OutgoingRecord;
    const oneTopic = records.every((r) => r.topic === first.topic);
    let written: Promise<unknown>;
    if (oneTopic && records.length > 1) {
      // Pipelines of 100 (measured with bench/): ioredis writes each as its commands are built, so Redis starts on
      // the first while the rest are encoded.
      const pipelines: Promise<void>[] = [];
      for (let i = 0; i < records.length; i += PIPELINE) {
        const pipeline = client.pipeline();
        const end = Math.min(records.length, i + PIPELINE);
        for (let j = i; j < end; j++) pipeline.call('XADD', this.#xaddArgs(records[j] as OutgoingRecord, now));
        pipelines.push(pipeline.exec().then(firstPipelineError));
      }
      written = Promise.all(pipelines);
    } else if (records.length === 1) {
      // The one publish of a quiet turn (most of them at low rates): its own promise, no Promise.all around it.
      written = client.call('XADD', this.#xaddArgs(first, now));
    } else {
      written = Promise.all(records.map((record) => client.call('XADD', this.#xaddArgs(record, now))));
    }
    if (this.#i.waitReplicas > 0) written = written.then(() => this.#replicated(connection));
    try {
      await withTimeout(
        written,
        publishTimeoutMs,
        `Publishing ${records.length} message(s) to Redis timed out after ${publishTimeoutMs} ms (outcome unknown)`,
      );
    } catch (error) {
      const what = `Publishing ${records.length} message(s) to '${first.topic}'${oneTopic ? '' : ' and other topics'}`;
      throw toBusbarError(error, { what, op: 'publish', secrets: this.#i.secrets });
    }
  }

  /**
   * WAIT counts the replicas that acknowledged every write of this connection so far: sent after the XADDs (on
   * the same connection), it covers them. Fewer than asked in time: the entries are on the primary but could be
   * lost with it, so the publish fails (retryable) and the caller sends it again (a duplicate with the same id).
   * The connection must be the one that wrote: ioredis sends a WAIT whose connection dropped again on the next
   * one, which has written nothing and answers at once with every replica. After a failover that "confirmed"
   * entries the old primary never replicated (63 of 10,000 lost in the Sentinel SIGSTOP test).
   */
  async #replicated(connection: number): Promise<void> {
    const { client, waitReplicas, waitTimeoutMs } = this.#i;
    const acked = Number(await client.call('WAIT', waitReplicas, waitTimeoutMs));
    if (this.#connection !== connection) {
      throw new PublishError(
        'The connection to Redis was replaced before WAIT answered: whether a replica has the write is unknown',
        { retryable: true },
      );
    }
    if (acked < waitReplicas) {
      throw new PublishError(
        `Only ${acked} of ${waitReplicas} replica(s) confirmed the write within ${waitTimeoutMs} ms (waitReplicas): it may be lost if the primary fails`,
        { retryable: true },
      );
    }
  }

  #xaddArgs(record: OutgoingRecord, now: number): (string | Buffer | number)[] {
    const { maxLen, maxAgeMs, keyPrefix } = this.#i;
    const args: (string | Buffer | number)[] = [streamKey(keyPrefix, record.topic)];
    if (maxLen !== undefined) args.push('MAXLEN', '~', maxLen);
    else if (maxAgeMs !== undefined) args.push('MINID', '~', now - maxAgeMs);
    args.push('*');
    pushEntryFields(args, record, now);
    return args;
  }
}

/** A pipeline's first command error, thrown (exec() resolves with per-command [error, result] pairs). */
function firstPipelineError(results: [Error | null, unknown][] | null): void {
  if (results === null) throw new Error('The Redis pipeline was discarded');
  for (const [error] of results) if (error) throw error;
}
