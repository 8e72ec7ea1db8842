import { createHash } from 'node:crypto';
import type { ClaimResult, IdempotencyStore } from '@busbar/core';
import { BusbarError, ClosedError, ConfigError } from '@busbar/core';
import { type ConnectionOptions, queryBounded, type ResolvedConnection, resolveConnection } from './connection.js';
import { mapPgError } from './errors.js';
import { DEFAULT_IDEMPOTENCY_TABLE, migrationHint, tableName } from './sql.js';
import type { SqlClient } from './types.js';

export interface PostgresIdempotencyStoreOptions extends ConnectionOptions {
  /** Table, `table` or `schema.table`. Default `busbar_idempotency`. */
  table?: string;
  /** Pool size when the store creates its own pool from `url`. Default 4. */
  maxConnections?: number;
}

/**
 * `completeIn` found the key already recorded by another attempt (whose claim
 * lease had lapsed while this one still ran). Let it roll back your
 * transaction: the retry sees the key done and acks without running again.
 */
export class AlreadyProcessedError extends BusbarError {
  readonly key: string;
  constructor(key: string) {
    super(
      'BUSBAR_DUPLICATE',
      `Idempotency key '${key}' was already recorded by another attempt; roll back this transaction`,
      {
        retryable: true,
      },
    );
    this.key = key;
  }
}

const SWEEP_EVERY = 1_000;

/**
 * The idempotency store on PostgreSQL: a row per key, claimed with a lease
 * (`INSERT ... ON CONFLICT`, so two consumers racing on one key get one
 * `claimed`), then recorded as done for the TTL. Times come from the
 * database clock, so consumers on several hosts agree on expiry.
 *
 * `completeIn(client, key, ttlMs)` records the key inside the handler's own
 * transaction: the business write and the record commit or roll back
 * together, which makes the effect exactly-once on top of at-least-once delivery.
 */
export class PostgresIdempotencyStore implements IdempotencyStore {
  readonly table: string;
  readonly #conn: ResolvedConnection;
  readonly #hint: string;
  readonly #sql: { claim: string; complete: string; completeIn: string; release: string; sweep: string };
  #ops = 0;
  #closed = false;

  constructor(options: PostgresIdempotencyStoreOptions) {
    if (typeof options !== 'object' || options === null)
      throw new ConfigError('PostgresIdempotencyStore needs { pool } or { url }');
    for (const name of Object.keys(options)) {
      if (!['pool', 'url', 'table', 'maxConnections', 'connectTimeoutMs', 'queryTimeoutMs'].includes(name)) {
        throw new ConfigError(`Invalid idempotency store options: unknown option '${name}'`);
      }
    }
    const t = tableName(options.table ?? DEFAULT_IDEMPOTENCY_TABLE);
    this.table = t.name;
    this.#hint = migrationHint('idempotency', t);
    this.#conn = resolveConnection(options, 'idempotency store options', options.maxConnections ?? 4);
    const lease = `now() + $2 * interval '1 millisecond'`;
    this.#sql = {
      // The outer SELECT reads the snapshot from before the INSERT: it tells `done` from `busy` when the claim lost.
      claim: `WITH won AS (
  INSERT INTO ${t.sql} AS i (key, done, expires_at) VALUES ($1, false, ${lease})
  ON CONFLICT (key) DO UPDATE SET done = false, expires_at = EXCLUDED.expires_at WHERE i.expires_at <= now()
  RETURNING 1)
SELECT EXISTS (SELECT 1 FROM won) AS claimed,
  (SELECT done FROM ${t.sql} WHERE key = $1 AND expires_at > now()) AS done`,
      complete: `INSERT INTO ${t.sql} (key, done, expires_at) VALUES ($1, true, ${lease})
ON CONFLICT (key) DO UPDATE SET done = true, expires_at = EXCLUDED.expires_at`,
      // Under the row lock, a concurrent completeIn that committed first makes this one update nothing.
      completeIn: `INSERT INTO ${t.sql} AS i (key, done, expires_at) VALUES ($1, true, ${lease})
ON CONFLICT (key) DO UPDATE SET done = true, expires_at = EXCLUDED.expires_at WHERE NOT i.done OR i.expires_at <= now()
RETURNING 1`,
      release: `DELETE FROM ${t.sql} WHERE key = $1 AND NOT done`,
      sweep: `DELETE FROM ${t.sql} WHERE key IN (SELECT key FROM ${t.sql} WHERE expires_at <= now() LIMIT 1000)`,
    };
  }

  async claim(key: string, leaseMs: number): Promise<ClaimResult> {
    const { rows } = await this.#query(this.#sql.claim, [storedKey(key), Math.ceil(leaseMs)], 'claim');
    const row = rows[0] as { claimed: boolean; done: boolean | null } | undefined;
    this.#maybeSweep();
    if (row?.claimed) return 'claimed';
    // No visible row although the claim lost: another claim committed after our snapshot. It holds the key now.
    return row?.done === true ? 'done' : 'busy';
  }

  async complete(key: string, ttlMs: number): Promise<void> {
    await this.#query(this.#sql.complete, [storedKey(key), Math.ceil(ttlMs)], 'complete');
  }

  async release(key: string): Promise<void> {
    await this.#query(this.#sql.release, [storedKey(key)], 'release');
  }

  /**
   * Records `key` as done inside the caller's transaction (`client` ran
   * `BEGIN`). Commit: the key is done with the business write. Roll back: it
   * is not (and the claim is released when the handler throws). Rejects with
   * {@link AlreadyProcessedError} if another attempt already recorded it.
   * Core's own `complete()` after the handler then only refreshes the TTL.
   */
  async completeIn(client: SqlClient, key: string | undefined, ttlMs: number = 7 * 24 * 3600_000): Promise<void> {
    if (typeof key !== 'string' || key === '') {
      throw new ConfigError(
        'completeIn needs the idempotency key (context.idempotencyKey; the subscription needs a group and idempotency)',
      );
    }
    let rowCount: number | null;
    try {
      ({ rowCount } = await client.query(this.#sql.completeIn, [storedKey(key), Math.ceil(ttlMs)]));
    } catch (error) {
      throw mapPgError(error, this.#conn.secrets, 'Idempotency completeIn failed', this.#hint);
    }
    if (rowCount === 0) throw new AlreadyProcessedError(key);
  }

  /** Deletes expired claims and records (also done now and then by claim). Resolves with how many were deleted. */
  async purgeExpired(): Promise<number> {
    let total = 0;
    for (;;) {
      const { rowCount } = await this.#query(this.#sql.sweep, [], 'purge');
      total += rowCount ?? 0;
      if ((rowCount ?? 0) < 1_000) return total;
    }
  }

  /** Ends the pool if the store created it from `url`; a pool you passed stays yours. Idempotent. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    if (this.#conn.owned) await this.#conn.pool.end();
  }

  #maybeSweep(): void {
    if (++this.#ops % SWEEP_EVERY !== 0) return;
    this.purgeExpired().catch(() => undefined);
  }

  async #query(text: string, values: unknown[], op: string) {
    if (this.#closed) throw new ClosedError(`The idempotency store is closed: ${op} rejected`);
    try {
      return await queryBounded(this.#conn, text, values);
    } catch (error) {
      throw mapPgError(error, this.#conn.secrets, `Idempotency ${op} failed (${this.#conn.where})`, this.#hint);
    }
  }

  toJSON(): Record<string, unknown> {
    return { table: this.table, connection: this.#conn.where };
  }
}

/**
 * The key as stored: as given when PostgreSQL can hold it in an indexed text column, else a digest. Keys come
 * from message ids, which a foreign producer sets: a NUL (which text cannot hold), a lone surrogate (which the
 * driver would turn into U+FFFD, making two keys one) or a length past the index's limit would fail the claim
 * of every delivery of that message.
 */
export function storedKey(key: string): string {
  // biome-ignore lint/suspicious/noControlCharactersInRegex: NUL is what is looked for
  if (key.length <= 1_024 && key.isWellFormed() && !/\u0000/.test(key)) return key;
  // Hashed as UTF-16 code units: every distinct string, lone surrogates included, keeps a distinct key.
  const units = new Uint16Array(key.length);
  for (let i = 0; i < key.length; i++) units[i] = key.charCodeAt(i);
  return `sha256:${createHash('sha256').update(units).digest('hex')}`;
}
