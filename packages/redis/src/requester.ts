import { randomUUID } from 'node:crypto';
import { AbortedError, ClosedError, NoRespondersError, TimeoutError } from '@busbar/core';
import { type Logger, type OutgoingRecord, type ReplyRecord, withTimeout } from '@busbar/core/transport';
import { type ClientConfig, connectClient, createClient, type RedisClient, subcommand } from './client.js';
import { CLOSE_STEP_MS, type CloseState } from './closing.js';
import { pushEntryFields } from './codec.js';
import { isReplyError, toBusbarError } from './errors.js';
import { replyStreamKey, requestStreamKey } from './keys.js';
import { entriesOf, type StreamReply, sleep } from './reader.js';
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

interface Pending {
  resolve(reply: ReplyRecord): void;
  fail(error: Error): void;
}

/**
 * The requesting side: one reply stream per transport (created at the first request, read by one blocking
 * XREAD on its own connection, kept alive by a TTL refresh, deleted at close); requests wait in a map by
 * correlation id, so nothing per request outlives it but its map entry, timer and abort listener, all
 * removed when it settles.
 */
export class Requester {
  readonly #i: RequesterInit;
  readonly #key: string;
  readonly #pending = new Map<string, Pending>();
  readonly #served = new Map<string, number>();
  #started: Promise<void> | undefined;
  #reader: RedisClient | undefined;
  #refresh: NodeJS.Timeout | undefined;
  #lastId = '0-0';
  #closed = false;

  constructor(init: RequesterInit) {
    this.#i = init;
    this.#key = replyStreamKey(init.keyPrefix, randomUUID());
  }

  request(record: OutgoingRecord, options: { timeoutMs: number; signal?: AbortSignal }): Promise<ReplyRecord> {
    if (this.#closed) return Promise.reject(new ClosedError('The Redis transport is closed: request rejected'));
    const { signal } = options;
    if (signal?.aborted) {
      return Promise.reject(new AbortedError(`Request on '${record.topic}' aborted`, { cause: signal.reason }));
    }
    const correlationId = randomUUID();
    return new Promise<ReplyRecord>((resolve, reject) => {
      let settled = false;
      const finish = (outcome: () => void): void => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        signal?.removeEventListener('abort', onAbort);
        this.#pending.delete(correlationId);
        outcome();
      };
      const fail = (error: Error) => finish(() => reject(error));
      const onAbort = () => fail(new AbortedError(`Request on '${record.topic}' aborted`, { cause: signal?.reason }));
      // The one bound on everything below: starting the reply reader, the responder check, the XADD, the wait.
      const timer = setTimeout(
        () => fail(new TimeoutError(`No reply on '${record.topic}' within ${options.timeoutMs} ms`)),
        options.timeoutMs,
      );
      signal?.addEventListener('abort', onAbort, { once: true });
      this.#pending.set(correlationId, { resolve: (reply) => finish(() => resolve(reply)), fail });
      this.#send(record, correlationId, options.timeoutMs).catch((error: unknown) => fail(error as Error));
    });
  }

  async #send(record: OutgoingRecord, correlationId: string, timeoutMs: number): Promise<void> {
    // Sent even when the caller aborted meanwhile: a request once made goes out, as on brokers whose publish is
    // synchronous, and its reply is dropped. One past its deadline is not: nobody waits for its answer.
    const deadline = Date.now() + timeoutMs;
    await this.#start();
    const stream = requestStreamKey(this.#i.keyPrefix, record.topic);
    if (!(await this.#hasResponders(stream))) throw new NoRespondersError(record.topic);
    if (Date.now() >= deadline) return;
    const args: (string | Buffer | number)[] = [stream, 'MAXLEN', '~', REQUEST_MAXLEN, '*'];
    pushEntryFields(args, record, Date.now());
    args.push(REPLY_TO_FIELD, this.#key, CORRELATION_FIELD, correlationId);
    try {
      await this.#i.client.call('XADD', args);
    } catch (error) {
      throw toBusbarError(error, this.#i.secrets, `Sending the request on '${record.topic}' failed`);
    }
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
      throw toBusbarError(error, this.#i.secrets, 'Looking for responders failed');
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
      throw toBusbarError(error, this.#i.secrets, 'Opening the reply stream failed');
    });
    return this.#started;
  }

  async #open(): Promise<void> {
    const { config } = this.#i;
    const reader = createClient({ ...config, connectionName: `${config.connectionName}-replies` }, true);
    reader.on('error', () => undefined); // reported through the read loop (sanitized)
    await connectClient(reader, config, this.#i.secrets);
    try {
      this.#lastId = await withTimeout(this.#create(), this.#i.opTimeoutMs, 'creating the reply stream timed out');
    } catch (error) {
      reader.disconnect();
      throw error;
    }
    if (this.#closed) {
      reader.disconnect();
      throw new ClosedError('The Redis transport is closed: request rejected');
    }
    this.#reader = reader;
    this.#refresh = setInterval(() => void this.#keepAlive(), REFRESH_MS);
    this.#refresh.unref();
    void this.#run(reader);
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
      if (Number(kept) === 0 && !this.#closed) await this.#create();
    } catch (error) {
      this.#i.logger.warn('Refreshing the reply stream failed; trying again later', {
        error: toBusbarError(error, this.#i.secrets, 'PEXPIRE failed'),
      });
    }
  }

  async #run(reader: RedisClient): Promise<void> {
    let backoff = 0;
    while (!this.#closed) {
      try {
        const reply = (await reader.callBuffer(
          'XREAD',
          'COUNT',
          1_000,
          'BLOCK',
          this.#i.blockMs,
          'STREAMS',
          this.#key,
          this.#lastId,
        )) as StreamReply;
        for (const [, entryId, fields] of entriesOf(reply)) {
          this.#lastId = entryId;
          if (fields === null) continue;
          const { correlationId, rest } = splitRrFields(fields);
          // A late reply (its request settled) or the marker entry: dropped.
          const pending = correlationId === undefined ? undefined : this.#pending.get(correlationId);
          pending?.resolve(decodeReply(entryId, rest));
        }
        backoff = 0;
      } catch (error) {
        if (this.#closed) break;
        this.#i.logger.warn('Reading replies failed; retrying', {
          error: toBusbarError(error, this.#i.secrets, 'XREAD failed'),
        });
        backoff = Math.min(backoff * 2 || 50, 2_000);
        await sleep(backoff);
      }
    }
  }

  /** Rejects every pending request, stops reading and deletes the reply stream (bounded). */
  async close(deadline: number): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    for (const pending of [...this.#pending.values()]) {
      pending.fail(new ClosedError('The Redis transport closed before the reply came'));
    }
    clearInterval(this.#refresh);
    this.#reader?.disconnect();
    if (this.#reader === undefined || this.#i.closing.silent || this.#i.client.status !== 'ready') return;
    const bound = Math.min(CLOSE_STEP_MS, Math.max(0, deadline - Date.now()));
    await withTimeout(this.#i.client.call('DEL', this.#key), bound, 'DEL timed out').catch(() => {
      this.#i.closing.silent = true;
    });
  }
}
