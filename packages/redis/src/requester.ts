import { randomUUID } from 'node:crypto';
import { ClosedError, NoRespondersError } from '@busbar/core';
import {
  type Logger,
  type OutgoingRecord,
  PendingReplies,
  type ReplyRecord,
  withTimeout,
} from '@busbar/core/transport';
import { type ClientConfig, connectClient, createClient, type RedisClient, subcommand } from './client.js';
import { CLOSE_STEP_MS, type CloseState } from './closing.js';
import { pushEntryFields } from './codec.js';
import { isReplyError, toBusbarError } from './errors.js';
import { replyStreamKey, requestStreamKey } from './keys.js';
import { BlockingReader, lastEntryId, type ReadMode, type StreamReply } from './reader.js';
import {
  CORRELATION_FIELD,
  decodeReply,
  REPLY_MAXLEN,
  REPLY_TO_FIELD,
  REQUEST_MAXLEN,
  splitRrFields,
} from './rr-wire.js';

export interface RequesterInit {
  readonly client: RedisClient;
  readonly config: ClientConfig;
  readonly keyPrefix: string;
  readonly blockMs: number;
  readonly opTimeoutMs: number;
  readonly closing: CloseState;
  readonly secrets: readonly string[];
  readonly logger: Logger;
}

/** A crashed requester's reply stream disappears this long after its last refresh. */
const REPLY_TTL_MS = 60_000;
const REFRESH_MS = 15_000;
/** "Somebody serves this topic" is believed this long (a request would otherwise cost an XINFO round trip). */
const RESPONDERS_CACHE_MS = 1_000;
const RESPONDERS_CACHE_MAX = 1_000;
/** Replies taken per XREAD: nothing holds them (each settles its request at once), so reads stay large. */
const REPLIES_PER_READ = 1_000;

/**
 * The requesting side: one reply stream per transport (created at the first request, read by one blocking
 * XREAD on its own connection, kept alive by a TTL refresh, deleted at close); requests wait in a map by
 * correlation id, so nothing per request outlives it but its map entry, timer and abort listener, all
 * removed when it settles.
 */
export class Requester {
  readonly #i: RequesterInit;
  readonly #key: string;
  readonly #pending = new PendingReplies('Redis');

  /** Replies that found no pending request (late ones), dropped. */
  get lateReplies(): number {
    return this.#pending.late;
  }
  readonly #served = new Map<string, number>();
  #started: Promise<void> | undefined;
  #reader: RedisClient | undefined;
  #loop: BlockingReader | undefined;
  #refresh: NodeJS.Timeout | undefined;
  #lastId = '0-0';
  /** The reply stream exists and is read: requests need not wait for #start(). */
  #opened = false;

  constructor(init: RequesterInit) {
    this.#i = init;
    this.#key = replyStreamKey(init.keyPrefix, randomUUID());
  }

  request(record: OutgoingRecord, options: { timeoutMs: number; signal?: AbortSignal }): Promise<ReplyRecord> {
    const correlationId = this.#pending.nextId();
    // The timeout is the one bound on everything #send does: the reply reader, the responder check, the XADD.
    return this.#pending.open(
      correlationId,
      record.topic,
      options,
      undefined,
      () => this.#send(record, correlationId, options.timeoutMs),
      (error) =>
        toBusbarError(error, {
          what: `Sending the request on '${record.topic}'`,
          op: 'request',
          secrets: this.#i.secrets,
        }),
    );
  }

  /**
   * With the reply stream read and responders seen within the last second (every request but the first of a
   * burst), the XADD goes out within this call, with no await before it: the three awaits of the first
   * request's way were a visible share of a round trip's CPU (bench profile).
   */
  #send(record: OutgoingRecord, correlationId: string, timeoutMs: number): Promise<unknown> {
    const stream = requestStreamKey(this.#i.keyPrefix, record.topic);
    const until = this.#opened ? this.#served.get(stream) : undefined;
    if (until !== undefined && until > Date.now()) return this.#xadd(stream, record, correlationId);
    return this.#sendFirst(stream, record, correlationId, timeoutMs);
  }

  async #sendFirst(stream: string, record: OutgoingRecord, correlationId: string, timeoutMs: number): Promise<void> {
    // Sent even when the caller aborted meanwhile: a request once made goes out, as on brokers whose publish is
    // synchronous, and its reply is dropped. One past its deadline is not: nobody waits for its answer.
    const deadline = Date.now() + timeoutMs;
    await this.#start();
    if (!(await this.#hasResponders(stream))) throw new NoRespondersError(record.topic);
    if (Date.now() >= deadline) return;
    await this.#xadd(stream, record, correlationId);
  }

  #xadd(stream: string, record: OutgoingRecord, correlationId: string): Promise<unknown> {
    const args: (string | Buffer | number)[] = [stream, 'MAXLEN', '~', REQUEST_MAXLEN, '*'];
    pushEntryFields(args, record, Date.now());
    args.push(REPLY_TO_FIELD, this.#key, CORRELATION_FIELD, correlationId);
    return this.#i.client.call('XADD', args);
  }

  /** Whether any consumer group reads the request stream (a responder creates one before it serves). */
  async #hasResponders(stream: string): Promise<boolean> {
    const until = this.#served.get(stream);
    if (until !== undefined && until > Date.now()) return true;
    let groups: unknown;
    try {
      groups = await subcommand(this.#i.client, 'XINFO', 'GROUPS', stream);
    } catch (error) {
      if (isReplyError(error, 'ERR no such key')) return false;
      throw toBusbarError(error, { what: 'Looking for responders', op: 'request', secrets: this.#i.secrets });
    }
    const some = Array.isArray(groups) && groups.length > 0;
    if (some) {
      if (this.#served.size >= RESPONDERS_CACHE_MAX) this.#served.clear();
      this.#served.set(stream, Date.now() + RESPONDERS_CACHE_MS);
    }
    return some;
  }

  #start(): Promise<void> {
    this.#started ??= this.#open().catch((error: unknown) => {
      // The next request tries again.
      this.#started = undefined;
      throw toBusbarError(error, { what: 'Opening the reply stream', op: 'request', secrets: this.#i.secrets });
    });
    return this.#started;
  }

  async #open(): Promise<void> {
    const { config } = this.#i;
    const reader = createClient({ ...config, connectionName: `${config.connectionName}-replies` }, true);
    reader.on('error', () => undefined); // reported through the read loop (sanitized)
    await connectClient(reader, config, this.#i.secrets, true);
    try {
      this.#lastId = await withTimeout(this.#create(), this.#i.opTimeoutMs, 'creating the reply stream timed out');
    } catch (error) {
      reader.disconnect();
      throw error;
    }
    if (this.#pending.closed) {
      reader.disconnect();
      throw new ClosedError('The Redis transport is closed: request rejected');
    }
    this.#reader = reader;
    this.#refresh = setInterval(() => void this.#keepAlive(), REFRESH_MS);
    this.#refresh.unref();
    const { client, blockMs, closing, secrets, logger } = this.#i;
    const init = {
      client,
      reader,
      topic: 'replies',
      prefetch: REPLIES_PER_READ * 2,
      blockMs,
      closing,
      secrets,
      logger,
    };
    this.#loop = new BlockingReader(init, this.#replies());
    await this.#loop.start();
    this.#opened = true;
  }

  /** Creates the reply stream with a marker entry (responders reply with NOMKSTREAM): its id is where reading starts. */
  async #create(): Promise<string> {
    const id = (await this.#i.client.call('XADD', this.#key, 'MAXLEN', '~', REPLY_MAXLEN, '*', 'open', '1')) as string;
    await this.#i.client.call('PEXPIRE', this.#key, REPLY_TTL_MS);
    return id;
  }

  async #keepAlive(): Promise<void> {
    try {
      const kept = await withTimeout(
        this.#i.client.call('PEXPIRE', this.#key, REPLY_TTL_MS),
        this.#i.opTimeoutMs,
        'refreshing the reply stream timed out',
      );
      // Gone (Redis was unreachable longer than the TTL, or flushed): make it again, or replies are dropped.
      if (Number(kept) === 0 && !this.#pending.closed) await this.#create();
    } catch (error) {
      this.#i.logger.warn('Refreshing the reply stream failed; trying again later', {
        error: toBusbarError(error, { what: 'Refreshing the reply stream', op: 'request', secrets: this.#i.secrets }),
      });
    }
  }

  /** The reply stream's reader mode: XREAD from the last reply seen; a reply is settled once matched. */
  #replies(): ReadMode {
    const key = this.#key;
    return {
      held: 0,
      read: async (count, block) => {
        const args: (string | number)[] = ['COUNT', count];
        if (block) args.push('BLOCK', this.#i.blockMs);
        args.push('STREAMS', key, this.#lastId);
        const reply = (await (this.#reader as RedisClient).callBuffer('XREAD', ...args)) as StreamReply;
        this.#lastId = lastEntryId(reply) ?? this.#lastId;
        return reply;
      },
      deliver: (rows) => {
        for (const [, entryId, fields] of rows) {
          if (fields === null) continue;
          const { correlationId, rest } = splitRrFields(fields);
          // A late reply (its request settled) or the marker entry: dropped.
          if (correlationId !== undefined) this.#pending.resolve(correlationId, decodeReply(entryId, rest));
        }
      },
      catchUp: () => Promise.resolve(false),
      recover: () => Promise.resolve(false),
      reconnected: () => undefined,
    };
  }

  /** Rejects every pending request, stops reading and deletes the reply stream (bounded). */
  async close(deadline: number): Promise<void> {
    if (this.#pending.closed) return;
    this.#pending.close();
    clearInterval(this.#refresh);
    // Dropped, not unblocked: pending requests already failed, and nothing read now has anyone to go to.
    this.#loop?.abandon();
    if (this.#reader === undefined || this.#i.closing.silent || this.#i.client.status !== 'ready') return;
    const bound = Math.min(CLOSE_STEP_MS, Math.max(0, deadline - Date.now()));
    await withTimeout(this.#i.client.call('DEL', this.#key), bound, 'DEL timed out').catch(() => {
      this.#i.closing.silent = true;
    });
  }
}
