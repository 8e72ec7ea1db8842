import { type Logger, withTimeout } from '@busbar/core/transport';
import { Redis } from 'ioredis';
import type { RedisClient } from './client.js';
import { CLOSE_STEP_MS, type CloseState } from './closing.js';
import { toBusbarError } from './errors.js';
import { dropConnection } from './liveness.js';

/** An XREAD/XREADGROUP/XRANGE-style reply read as Buffers: [[key, [[id, fields | null], ...]], ...]. */
export type StreamReply = [Buffer, [Buffer, Buffer[] | null][]][] | null;

/** One entry of a reply: stream key, entry id, fields (null: deleted or trimmed while pending). */
export type Row = [stream: string, entryId: string, fields: Buffer[] | null];

/** A reply's entries with their stream key (a plain array: a generator cost more per entry). */
export function entriesOf(reply: StreamReply): Row[] {
  const rows: Row[] = [];
  if (!reply) return rows;
  for (const [key, entries] of reply) {
    const stream = key.toString();
    for (const [id, fields] of entries) rows.push([stream, id.toString('latin1'), fields]);
  }
  return rows;
}

/**
 * The id of a single-stream reply's last entry, undefined for none: where an XREAD mode reads on from. Taken
 * when the reply arrives, not at delivery: the reader may send the next read before it delivers this one.
 */
export function lastEntryId(reply: StreamReply): string | undefined {
  const entries = reply?.[0]?.[1];
  return entries?.[entries.length - 1]?.[0].toString('latin1');
}

/** Waits for capacity without a timer: resolved by the next settle or by stop. */
export class Gate {
  #waiter: (() => void) | undefined;
  wait(): Promise<void> {
    return new Promise((resolve) => {
      this.#waiter = resolve;
    });
  }
  open(): void {
    const waiter = this.#waiter;
    this.#waiter = undefined;
    waiter?.();
  }
}

export const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/** True if `promise` settles within `ms` (its outcome is ignored). */
export async function settlesWithin(promise: Promise<unknown> | undefined, ms: number): Promise<boolean> {
  if (!promise) return true;
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<boolean>((resolve) => {
    // No deadline (Infinity) waits for the promise itself: setTimeout would read it as 1 ms.
    if (Number.isFinite(ms)) timer = setTimeout(() => resolve(false), Math.max(0, Math.min(ms, 2_147_483_647)));
  });
  const done = promise.then(
    () => true,
    () => true,
  );
  const result = await Promise.race([done, timeout]);
  clearTimeout(timer);
  return result;
}

/** How much longer than its BLOCK a read may take before its connection counts as silent (see #watched). */
const SILENT_READ_MS = 5_000;

/** The longest pause between failed reads: a broker that stays down is asked about twice a second at most. */
const MAX_BACKOFF_MS = 2_000;

/**
 * What a blocking reader reads and whom it hands entries to: a consumer group (XREADGROUP over the topic
 * and retry streams) or a broadcast (XREAD from the last entry seen). Everything else, the loop, its
 * backoff, the prefetch window and stopping, is the reader's and the same for both.
 */
export interface ReadMode {
  /** Entries handed out and not settled yet. */
  readonly held: number;
  /** One read of at most `count` new entries; `block`: wait up to `blockMs` for the first one. */
  read(count: number, block: boolean): Promise<StreamReply>;
  /** Work before the next read (a group re-reads its own pending entries after a reconnect); true if it did some. */
  catchUp(room: number): Promise<boolean>;
  /** A read failed: repair what can be repaired (a deleted group); true when that was all, so nothing is logged. */
  recover(error: unknown): Promise<boolean>;
  /** The connection came back: a reply may have been lost on the way. */
  reconnected(): void;
  deliver(rows: Row[]): void;
}

export interface ReaderInit {
  /** The shared command connection (CLIENT UNBLOCK goes through it). */
  readonly client: RedisClient;
  /** This reader's own connection: a blocking read holds it. */
  readonly reader: RedisClient;
  readonly topic: string;
  readonly prefetch: number;
  readonly blockMs: number;
  readonly closing: CloseState;
  readonly secrets: readonly string[];
  readonly logger: Logger;
}

/**
 * One blocking read loop on its own connection, for both read modes: reads in chunks of half the prefetch
 * window (waiting for settles, without a timer, when the window is full), sends the next read ahead while
 * entries are in hand, retries failed reads after a doubling pause (50 ms up to 2 s), and stops within
 * `blockMs` + 1 s at most: at once with CLIENT UNBLOCK, else by dropping the connection.
 */
export class BlockingReader {
  readonly #i: ReaderInit;
  readonly #mode: ReadMode;
  readonly #gate = new Gate();
  #stopped = false;
  #loop: Promise<void> | undefined;
  #readerId: number | undefined;

  constructor(init: ReaderInit, mode: ReadMode) {
    this.#i = init;
    this.#mode = mode;
  }

  get stopped(): boolean {
    return this.#stopped;
  }

  async start(): Promise<void> {
    await this.#learnReaderId();
    this.#i.reader.on('ready', () => {
      this.#mode.reconnected();
      void this.#learnReaderId();
    });
    this.#loop = this.#run();
  }

  /** A delivery was settled: room for more. */
  wake(): void {
    this.#gate.open();
  }

  async #learnReaderId(): Promise<void> {
    if (!(this.#i.reader instanceof Redis)) return; // a cluster reader: no CLIENT UNBLOCK, stop waits up to blockMs
    try {
      this.#readerId = Number(await this.#i.reader.call('CLIENT', 'ID'));
    } catch {
      this.#readerId = undefined;
    }
  }

  async #run(): Promise<void> {
    const mode = this.#mode;
    const { prefetch } = this.#i;
    const chunk = Math.max(1, Math.ceil(prefetch / 2));
    let backoff = 0;
    // The next read, sent before the current reply is delivered: Redis serves it while this process
    // runs handlers (measured: without it the drain alternated between waiting and working).
    let ahead: Promise<StreamReply> | undefined;
    let aheadCount = 0;
    while (!this.#stopped) {
      try {
        let reply: StreamReply;
        let asked: number;
        if (ahead) {
          reply = await ahead;
          asked = aheadCount;
          ahead = undefined;
        } else {
          const room = prefetch - mode.held;
          // Read in chunks: wait until half the prefetch is free (or nothing is held), else every settle
          // would trigger its own COUNT 1 round trip.
          if (room <= 0 || (mode.held > 0 && room < chunk)) {
            await this.#gate.wait();
            continue;
          }
          if (await this.#watched(mode.catchUp(room))) continue;
          asked = Math.min(room, chunk);
          reply = await this.#watched(mode.read(asked, true));
        }
        const rows = entriesOf(reply);
        // A full reply means more is waiting: ask for it now without blocking (a blocking read queued
        // behind this one would hold up stop()), if the entries in hand leave room for it.
        aheadCount = Math.min(chunk, prefetch - mode.held - rows.length);
        if (rows.length >= asked && !this.#stopped && aheadCount > 0) {
          ahead = this.#watched(mode.read(aheadCount, false));
          ahead.catch(() => undefined); // awaited (and its error handled) on the next turn
        }
        mode.deliver(rows);
        backoff = 0;
      } catch (error) {
        ahead = undefined;
        if (this.#stopped) break;
        if (!(await mode.recover(error).catch(() => false))) {
          this.#i.logger.warn(`Reading '${this.#i.topic}' failed; retrying`, {
            error: toBusbarError(error, {
              what: `Reading '${this.#i.topic}'`,
              op: 'consume',
              secrets: this.#i.secrets,
            }),
          });
        }
        backoff = Math.min(backoff * 2 || 50, MAX_BACKOFF_MS);
        await sleep(backoff);
      }
    }
    // A read sent ahead and not delivered: a group's entries stay pending for this consumer (re-read or
    // claimed later); a broadcast reader is done with the stream anyway.
    await ahead?.catch(() => undefined);
  }

  /**
   * A read answers within `blockMs`; one that has not after `blockMs` + {@link SILENT_READ_MS} is on a connection
   * to a server that went silent (its reply, or the command, dropped on the way): the connection is dropped so
   * ioredis reconnects and sends the read again (again each time, while the silence lasts). A group's entries
   * whose reply was lost stay pending for this consumer and are read again.
   */
  #watched<T>(read: Promise<T>): Promise<T> {
    // One timer per reader, not one per read (a read per chunk is on the consume path): it looks at the oldest
    // read still unanswered.
    if (this.#unanswered++ === 0) this.#since = Date.now();
    this.#watchdog ??= setInterval(() => this.#checkSilence(), (this.#i.blockMs + SILENT_READ_MS) / 2);
    this.#watchdog.unref();
    return read.finally(() => {
      // The rest (a read sent ahead) left later than this one: counted from now, a little generously.
      this.#since = --this.#unanswered === 0 ? undefined : Date.now();
    });
  }

  #unanswered = 0;
  #since: number | undefined;
  #watchdog: NodeJS.Timeout | undefined;

  #checkSilence(): void {
    if (this.#stopped) {
      clearInterval(this.#watchdog);
      return;
    }
    if (this.#since === undefined || Date.now() - this.#since < this.#i.blockMs + SILENT_READ_MS) return;
    this.#since = Date.now();
    dropConnection(this.#i.reader);
  }

  /** Ends intake: once this resolves the loop delivers nothing more. */
  async stop(): Promise<void> {
    if (this.#stopped) return;
    this.#stopped = true;
    this.#gate.open();
    const { client, reader, closing } = this.#i;
    // Unreachable: the pending read can never return, and CLIENT UNBLOCK could never be sent.
    if (reader.status !== 'ready' || client.status !== 'ready') closing.silent = true;
    else if (this.#readerId !== undefined && !closing.silent) {
      // Ends the blocking read at once instead of after blockMs. A healthy Redis answers at once: no answer
      // within a step means it went silent, and nothing else will be answered either.
      const unblock = withTimeout(client.call('CLIENT', 'UNBLOCK', this.#readerId), CLOSE_STEP_MS, 'unblock');
      await unblock.catch(() => {
        closing.silent = true;
      });
    }
    // With Redis silent the read never returns (and ioredis does not reject commands queued while it
    // reconnects, even on disconnect): drop the connection and do not wait for it.
    if (closing.silent) reader.disconnect();
    else if (!(await settlesWithin(this.#loop, this.#i.blockMs + 1_000))) {
      closing.silent = true;
      reader.disconnect();
    }
  }

  /** Stops at once by dropping the read connection, waiting for nothing (a read cut short is lost). */
  abandon(): void {
    this.#stopped = true;
    this.#gate.open();
    this.#i.reader.disconnect();
  }

  /** Drops the read connection (after stop). */
  disconnect(): void {
    this.#i.reader.disconnect();
  }
}
