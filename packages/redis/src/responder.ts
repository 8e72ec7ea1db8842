import { TimeoutError } from '@busbar/core';
import type { IncomingRequest, Logger, ReplyRecord, Timed, TransportSubscription } from '@busbar/core/transport';
import { TimeoutLane, withTimeout } from '@busbar/core/transport';
import { type RedisClient, subcommand } from './client.js';
import { CLOSE_STEP_MS, type CloseState } from './closing.js';
import { decodeEntry } from './codec.js';
import { isReplyError, toBusbarError } from './errors.js';
import { BlockingReader, type ReadMode, type Row, type StreamReply } from './reader.js';
import { pushReplyFields, REPLY_MAXLEN, splitRrFields } from './rr-wire.js';

export interface ResponderInit {
  readonly client: RedisClient;
  readonly reader: RedisClient;
  /** The topic's request stream. */
  readonly stream: string;
  readonly topic: string;
  /** The consumer group read: the busbar group, or one of this responder's own when it has none. */
  readonly group: string;
  /** True when the group is this responder's alone (no busbar group): destroyed at close. */
  readonly ownGroup: boolean;
  readonly consumer: string;
  readonly prefetch: number;
  readonly blockMs: number;
  readonly opTimeoutMs: number;
  readonly closing: CloseState;
  readonly secrets: readonly string[];
  readonly logger: Logger;
  readonly onRequest: (request: IncomingRequest) => void;
  readonly onError: (error: Error) => void;
}

/** The native record of a request (`IncomingRequest.raw`). */
export interface RedisRequestEntry {
  readonly stream: string;
  readonly entryId: string;
  readonly replyTo: string;
  readonly correlationId: string;
}

/** A reply's XADD in flight, failed by the lane when Redis has not answered it in time. */
interface ReplyWrite extends Timed {
  settled: boolean;
  fail: (error: unknown) => void;
}

const notYet = (): void => {};

/**
 * One responder: XREADGROUP on the topic's request stream, at most `prefetch` requests unanswered at once;
 * each is acked once its reply is written. Requests are never redelivered: by the time another member could
 * claim one, its requester has given up, so a pending entry only shows a request being answered (XPENDING).
 */
export class Responder implements TransportSubscription, ReadMode {
  readonly #i: ResponderInit;
  readonly #reader: BlockingReader;
  /**
   * Bounds every reply's XADD (commands wait across reconnects, and an unanswered reply holds a prefetch slot):
   * one timer for all of them, not one set and cleared per reply.
   */
  readonly #writes: TimeoutLane<ReplyWrite>;
  #unanswered = 0;

  constructor(init: ResponderInit) {
    this.#i = init;
    this.#reader = new BlockingReader(init, this);
    this.#writes = new TimeoutLane(init.opTimeoutMs, (write) =>
      write.fail(new TimeoutError('XADD of the reply timed out')),
    );
  }

  /** Creates the group at the stream's end: resolves once requests sent afterwards reach it. */
  async start(): Promise<void> {
    // Commands wait across reconnects (maxRetriesPerRequest: null): bounded here, or respond() could hang.
    await withTimeout(this.#ensureGroup(), this.#i.opTimeoutMs, 'creating the responder group timed out');
    await this.#reader.start();
  }

  async #ensureGroup(): Promise<void> {
    try {
      await subcommand(this.#i.client, 'XGROUP', 'CREATE', this.#i.stream, this.#i.group, '$', 'MKSTREAM');
    } catch (error) {
      if (!isReplyError(error, 'BUSYGROUP')) throw error;
    }
  }

  get held(): number {
    return this.#unanswered;
  }

  read(count: number, block: boolean): Promise<StreamReply> {
    const { reader, stream, group, consumer } = this.#i;
    const args: (string | number)[] = ['GROUP', group, consumer, 'COUNT', count];
    if (block) args.push('BLOCK', this.#i.blockMs);
    args.push('STREAMS', stream, '>');
    return reader.callBuffer('XREADGROUP', ...args) as Promise<StreamReply>;
  }

  deliver(rows: Row[]): void {
    for (const [, entryId, fields] of rows) this.#take(entryId, fields);
  }

  /** Nothing to catch up on: a request is never read twice (see above). */
  catchUp(): Promise<boolean> {
    return Promise.resolve(false);
  }

  async recover(error: unknown): Promise<boolean> {
    if (!isReplyError(error, 'NOGROUP')) return false;
    // The request stream was deleted (DEL, FLUSHALL): make the group again, or nothing is served.
    await this.#ensureGroup().catch(() => undefined);
    return true;
  }

  reconnected(): void {}

  #take(entryId: string, fields: Buffer[] | null): void {
    const { replyTo, correlationId, rest } = fields ? splitRrFields(fields) : { replyTo: undefined, rest: [] };
    if (fields === null || replyTo === undefined || replyTo === '' || correlationId === undefined) {
      // Nobody to answer (a trimmed entry, or a plain XADD without reply-to): done with it.
      this.#ack(entryId);
      if (fields !== null) {
        this.#i.logger.warn(`A request on '${this.#i.topic}' has no reply-to or correlation-id; dropped`, {
          entryId,
        });
      }
      return;
    }
    const entry = decodeEntry(entryId, rest);
    const raw: RedisRequestEntry = { stream: this.#i.stream, entryId, replyTo, correlationId };
    this.#unanswered++;
    this.#i.onRequest({
      id: entry.id,
      topic: this.#i.topic,
      headers: entry.headers,
      body: entry.body,
      contentType: entry.contentType,
      timestamp: entry.timestamp,
      raw,
      // Core replies once per request (SPI).
      reply: (reply: ReplyRecord) => {
        // Acked whatever the reply's fate (a request is never redelivered, see above), so the XACK need not
        // wait for the XADD. Queued first: see #ack for why the order puts both in one write.
        this.#ack(entryId);
        return this.#send(raw, reply);
      },
    });
  }

  /**
   * NOMKSTREAM: a reply stream that is gone belongs to a requester that closed or crashed; the reply is
   * dropped instead of creating a key nobody deletes. Settles once: written, refused, or timed out by the lane
   * (one promise per reply, no async frames: a visible share of a round trip's CPU in the bench profile).
   */
  #send(raw: RedisRequestEntry, reply: ReplyRecord): Promise<void> {
    const args: (string | Buffer | number)[] = [raw.replyTo, 'NOMKSTREAM', 'MAXLEN', '~', REPLY_MAXLEN, '*'];
    pushReplyFields(args, raw.correlationId, reply);
    return new Promise<void>((resolve, reject) => {
      const write: ReplyWrite = { deadline: this.#writes.deadline(), settled: false, fail: notYet };
      const settle = (): boolean => {
        if (write.settled) return false;
        write.settled = true;
        this.#writes.settled(write);
        this.#answered();
        return true;
      };
      write.fail = (error: unknown) => {
        if (!settle()) return;
        reject(
          toBusbarError(error, { what: `Replying on '${this.#i.topic}'`, op: 'publish', secrets: this.#i.secrets }),
        );
      };
      this.#writes.add(write);
      this.#i.client.call('XADD', args).then(() => {
        if (settle()) resolve();
      }, write.fail);
    });
  }

  #answered(): void {
    this.#unanswered--;
    this.#reader.wake();
  }

  /**
   * Requests answered in one run of the microtask queue: acked by one XACK with every id (one XACK per reply
   * was a second command per request for Redis to run). The flush is a `process.nextTick`, which runs once the
   * microtasks, and so every handler that finished in them, are done; scheduled before the first reply's XADD,
   * it runs before ioredis' auto-pipeline flush (also a nextTick), so the XACK joins the replies' write. With
   * `setImmediate` it was a write of its own: 0.11 socket writes per round trip then, 0.09 now (100 in flight).
   */
  #acks: string[] = [];

  #ack(entryId: string): void {
    this.#acks.push(entryId);
    if (this.#acks.length === 1) process.nextTick(() => this.#flushAcks());
  }

  #flushAcks(): void {
    const ids = this.#acks;
    this.#acks = [];
    this.#i.client.call('XACK', this.#i.stream, this.#i.group, ...ids).catch((error: unknown) => {
      this.#i.logger.debug(`XACK of ${ids.length} request(s) on '${this.#i.topic}' failed`, {
        error: toBusbarError(error, {
          what: `Acking requests on '${this.#i.topic}'`,
          op: 'consume',
          secrets: this.#i.secrets,
        }),
      });
    });
  }

  /**
   * Stops reading: a request handed to this consumer by a read cut short stays unanswered (its requester
   * times out), as with any responder that goes away mid-request.
   */
  async stop(): Promise<void> {
    await this.#reader.stop();
  }

  /** Removes this responder from Redis: its own group, or its consumer (and its pending entries) in a shared one. */
  async close(): Promise<void> {
    await this.stop();
    this.#reader.disconnect();
    const { client, closing, stream, group, consumer } = this.#i;
    if (closing.silent || client.status !== 'ready') return;
    const cleanup = this.#i.ownGroup
      ? subcommand(client, 'XGROUP', 'DESTROY', stream, group)
      : subcommand(client, 'XGROUP', 'DELCONSUMER', stream, group, consumer);
    await withTimeout(cleanup, CLOSE_STEP_MS, 'cleanup timed out').catch(() => undefined);
  }
}
