import { randomUUID } from 'node:crypto';
import { BusbarError, ConfigError } from '@busbar/core';
import { type BatchResult, type BatchSql, batchSql, publishBatch } from './batch.js';
import {
  BoundedClient,
  connectBounded,
  queryBounded,
  type ResolvedConnection,
  resolveConnection,
} from './connection.js';
import { isConnectionFailure, mapPgError } from './errors.js';
import { emit } from './events.js';
import { parse, type RelayOptions, type ResolvedRelayOptions, relayOptionsSchema } from './options.js';
import { notifyChannel } from './outbox.js';
import { migrationHint, type TableName, tableName } from './sql.js';
import type { PooledClient } from './types.js';

const ignore = (): void => undefined;

export interface Relay {
  /** Starts listening and publishing. Resolves once the first LISTEN was attempted. */
  start(): Promise<void>;
  /** Graceful: finishes (commits) the batch in progress, stops listening, ends the pool it created. Idempotent. */
  stop(): Promise<void>;
  /** Publishes pending rows until none is left (or only rows held by other relays). For scripts and tests. */
  drain(): Promise<number>;
  /** Deletes rows published longer than `retentionMs` ago now (it also runs every `cleanupIntervalMs`). */
  cleanup(): Promise<void>;
  readonly running: boolean;
}

/**
 * Creates a relay that publishes outbox rows through a bus. Several relays
 * may share one table: rows are locked with SKIP LOCKED, and a row waits
 * while an older row of its key is held by another relay, so per-key order
 * holds. At-least-once: a crash between the broker's confirm and the commit
 * re-sends the batch with the same message ids.
 */
export function createRelay(options: RelayOptions): Relay {
  return new OutboxRelay(parse(relayOptionsSchema, options, 'relay options'));
}

class OutboxRelay implements Relay {
  readonly #options: ResolvedRelayOptions;
  readonly #table: TableName;
  readonly #sql: BatchSql;
  readonly #name: string;
  readonly #channel: string;
  #conn: ResolvedConnection | undefined;
  #running = false;
  #stopping: Promise<void> | undefined;
  #loop: Promise<void> | undefined;
  #notified = false;
  /** Keys whose rows the last batch had to hold back: the next batch looks past them (batch.ts). */
  #heldKeys: readonly string[] = [];
  #wake: (() => void) | undefined;
  #listener: PooledClient | undefined;
  #listenTimer: NodeJS.Timeout | undefined;
  #cleanupTimer: NodeJS.Timeout | undefined;
  #cleaning: Promise<void> | undefined;
  #listening: Promise<void> | undefined;

  constructor(options: ResolvedRelayOptions) {
    this.#options = options;
    this.#table = tableName(options.table);
    this.#sql = batchSql(this.#table, options.mode);
    this.#name = options.name ?? `relay-${randomUUID().slice(0, 8)}`;
    this.#channel = notifyChannel(this.#table);
  }

  get running(): boolean {
    return this.#running;
  }

  async start(): Promise<void> {
    if (this.#stopping) throw new ConfigError('This relay was stopped; create a new one');
    if (this.#running) return;
    this.#conn ??= resolveConnection(this.#options, 'relay options', 4);
    this.#running = true;
    this.#listening = this.#listen();
    await this.#listening;
    if (!this.#running) return; // stopped while the LISTEN connection opened
    if (this.#options.cleanupIntervalMs > 0) {
      this.#cleanupTimer = setInterval(() => this.#cleanup(), this.#options.cleanupIntervalMs);
      this.#cleanupTimer.unref();
    }
    this.#checkTimer = setInterval(() => void this.#checkListener(), this.#options.listenCheckIntervalMs);
    this.#checkTimer.unref();
    this.#loop = this.#run();
    emit(() => ({ type: 'started', relay: this.#name, table: this.#table.name }));
  }

  stop(): Promise<void> {
    this.#stopping ??= (async () => {
      if (!this.#running) return;
      this.#running = false;
      this.#wake?.();
      clearInterval(this.#cleanupTimer);
      clearInterval(this.#checkTimer);
      clearTimeout(this.#listenTimer);
      await this.#loop;
      await this.#cleaning;
      await this.#listening;
      this.#dropListener();
      if (this.#conn?.owned) await this.#conn.pool.end().catch(() => undefined);
      emit(() => ({ type: 'stopped', relay: this.#name, table: this.#table.name }));
    })();
    return this.#stopping;
  }

  async drain(): Promise<number> {
    const conn = this.#conn ?? resolveConnection(this.#options, 'relay options', 2);
    let total = 0;
    try {
      for (;;) {
        const result = await this.#batch(conn);
        if (result.error !== undefined) throw result.error;
        total += result.published;
        if (result.published === 0 && result.failed.length === 0) return total;
      }
    } finally {
      if (!this.#conn && conn.owned) await conn.pool.end().catch(() => undefined);
    }
  }

  async #run(): Promise<void> {
    const conn = this.#conn as ResolvedConnection;
    let backoff = 0;
    while (this.#running) {
      this.#notified = false;
      let result: BatchResult;
      try {
        result = await this.#batch(conn);
      } catch (error) {
        result = { fetched: 0, published: 0, deferred: 0, heldKeys: [], failed: [], firstId: '', lastId: '', error };
      }
      if (result.error !== undefined) {
        this.#reportError('batch', result.error);
        // Other rows went out: go on (the failed ones are tried again with the next batch); back off only when
        // nothing moves, or one row the bus keeps refusing would slow every other topic to the backoff's pace.
        if (result.published > 0 || result.failed.length > 0) {
          backoff = 0;
          continue;
        }
        backoff = Math.min(
          this.#options.maxBackoffMs,
          backoff === 0 ? Math.max(10, this.#options.pollIntervalMs / 4) : backoff * 2,
        );
        await this.#sleep(backoff, true);
        continue;
      }
      backoff = 0;
      // Rows held behind another relay's batch free up when it commits, which sends no NOTIFY: look again soon.
      if (result.deferred > 0) await this.#sleep(Math.min(this.#options.pollIntervalMs, 50), false);
      else if (result.published === 0 && result.failed.length === 0)
        await this.#sleep(this.#options.pollIntervalMs, false);
    }
  }

  async #batch(conn: ResolvedConnection): Promise<BatchResult> {
    const started = Date.now();
    let client: BoundedClient;
    try {
      client = new BoundedClient(await connectBounded(conn), conn.queryTimeoutMs);
    } catch (error) {
      throw mapPgError(error, conn.secrets, `Relay cannot connect to PostgreSQL (${conn.where})`);
    }
    let destroy = false;
    // A session killed while idle in the transaction emits 'error' on the client; unheard, it would crash the process.
    client.client.on('error', ignore);
    try {
      await client.query('BEGIN');
      const result = await publishBatch(
        client,
        this.#sql,
        this.#options.bus,
        this.#options.batchSize,
        this.#options.beforeMark,
        this.#heldKeys,
      );
      this.#heldKeys = result.heldKeys;
      await client.query('COMMIT');
      for (const row of result.failed) {
        emit(() => ({
          type: 'failed',
          relay: this.#name,
          table: this.#table.name,
          id: row.id,
          messageId: row.messageId,
          error: row.error,
        }));
      }
      if (result.published > 0) {
        emit(() => ({
          type: 'published',
          relay: this.#name,
          table: this.#table.name,
          count: result.published,
          deferred: result.deferred,
          firstId: result.firstId,
          lastId: result.lastId,
          durationMs: Date.now() - started,
        }));
      }
      return result;
    } catch (error) {
      destroy = client.broken || (!BusbarError.is(error) && isConnectionFailure(error));
      if (!destroy) await client.query('ROLLBACK').catch(() => (destroy = true));
      throw mapPgError(
        error,
        conn.secrets,
        `Outbox relay batch on '${this.#table.name}' failed`,
        migrationHint('outbox', this.#table),
      );
    } finally {
      client.client.removeListener('error', ignore);
      client.release(destroy);
    }
  }

  /** Resolves after `ms`, on a NOTIFY (unless `ignoreNotify`: backing off after an error), or on stop. */
  #sleep(ms: number, ignoreNotify: boolean): Promise<void> {
    if (!this.#running || (this.#notified && !ignoreNotify)) return Promise.resolve();
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(timer);
        this.#wake = undefined;
        resolve();
      };
      const timer = setTimeout(done, ms);
      this.#wake = () => {
        if (ignoreNotify && this.#running) return;
        done();
      };
    });
  }

  #onNotify = (message: { channel: string }): void => {
    if (message.channel !== this.#channel) return;
    this.#notified = true;
    this.#wake?.();
  };

  async #listen(): Promise<void> {
    const conn = this.#conn as ResolvedConnection;
    let client: PooledClient | undefined;
    try {
      client = await connectBounded(conn);
      client.on('notification', this.#onNotify);
      client.on('error', (error) => {
        this.#reportError('listen', mapPgError(error, conn.secrets, 'Relay LISTEN connection failed'));
        this.#dropListener();
        this.#retryListen();
      });
      await new BoundedClient(client, conn.queryTimeoutMs).query(`LISTEN "${this.#channel.replaceAll('"', '""')}"`);
      this.#listener = client;
      // Notifications sent while no one listened are lost: look once now.
      this.#notified = true;
      this.#wake?.();
    } catch (error) {
      client?.removeAllListeners('notification');
      client?.release(true);
      this.#reportError('listen', mapPgError(error, conn.secrets, `Relay cannot LISTEN on PostgreSQL (${conn.where})`));
      this.#retryListen();
    }
  }

  #checkTimer: NodeJS.Timeout | undefined;
  #checking = false;

  /** Asks the LISTEN connection for an answer; none in time: it is replaced (and the table looked at once). */
  async #checkListener(): Promise<void> {
    const client = this.#listener;
    if (client === undefined || this.#checking || !this.#running) return;
    const conn = this.#conn as ResolvedConnection;
    this.#checking = true;
    try {
      await new BoundedClient(client, conn.queryTimeoutMs).query('SELECT 1');
    } catch (error) {
      if (this.#listener !== client) return;
      this.#reportError('listen', mapPgError(error, conn.secrets, 'Relay LISTEN connection stopped answering'));
      this.#dropListener();
      this.#retryListen();
    } finally {
      this.#checking = false;
    }
  }

  #retryListen(): void {
    if (!this.#running || this.#listenTimer) return;
    this.#listenTimer = setTimeout(
      () => {
        this.#listenTimer = undefined;
        if (this.#running && !this.#listener) this.#listening = this.#listen();
      },
      Math.min(this.#options.pollIntervalMs, 1_000),
    );
    this.#listenTimer.unref();
  }

  #dropListener(): void {
    const client = this.#listener;
    this.#listener = undefined;
    if (!client) return;
    client.removeAllListeners('notification');
    // Destroyed, not returned: a pooled connection must not keep LISTENing for its next user.
    client.release(true);
  }

  /** Runs one cleanup unless one runs; its failure is reported, and also recorded for `cleanup()` to throw. */
  #cleanup(): void {
    if (this.#cleaning || !this.#running) return;
    const conn = this.#conn as ResolvedConnection;
    const text = `DELETE FROM ${this.#table.sql} WHERE id IN (
  SELECT id FROM ${this.#table.sql} WHERE published_at IS NOT NULL AND published_at < now() - $1 * interval '1 millisecond' LIMIT 10000)`;
    this.#cleaning = (async () => {
      try {
        let deleted = 0;
        for (;;) {
          const result = await queryBounded(conn, text, [this.#options.retentionMs]);
          deleted += result.rowCount ?? 0;
          if ((result.rowCount ?? 0) < 10_000 || !this.#running) break;
        }
        if (deleted > 0) emit(() => ({ type: 'cleaned', relay: this.#name, table: this.#table.name, deleted }));
      } catch (error) {
        const failure = mapPgError(error, conn.secrets, 'Outbox cleanup failed', migrationHint('outbox', this.#table));
        this.#cleanupFailure = failure;
        this.#reportError('cleanup', failure);
      } finally {
        this.#cleaning = undefined;
      }
    })();
  }

  async cleanup(): Promise<void> {
    if (!this.#running) throw new ConfigError('cleanup() needs a started relay');
    await this.#cleaning;
    this.#cleanupFailure = undefined;
    this.#cleanup();
    await this.#cleaning;
    // The caller asked for this cleanup: its failure is theirs (the timer's runs only report theirs).
    const failure = this.#cleanupFailure;
    this.#cleanupFailure = undefined;
    if (failure !== undefined) throw failure;
  }

  #cleanupFailure: Error | undefined;

  #reportError(stage: 'batch' | 'listen' | 'cleanup', error: unknown): void {
    const err = error instanceof Error ? error : new Error(String(error));
    emit(() => ({ type: 'error', relay: this.#name, table: this.#table.name, stage, error: err }));
  }
}
