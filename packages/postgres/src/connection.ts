import { ConfigError, ConnectionError, redactUrl, TimeoutError } from '@busbar/core';
import pg from 'pg';
import type { PooledClient, PoolLike, QueryResultLike } from './types.js';

/** Bounds busbar puts on every PostgreSQL round trip, so a database that stops answering fails typed instead of hanging. */
export const DEFAULT_CONNECT_TIMEOUT_MS = 5_000;
export const DEFAULT_QUERY_TIMEOUT_MS = 30_000;

export interface ConnectionOptions {
  /** A pool you own (pg `Pool`); busbar borrows clients and never ends it. */
  pool?: PoolLike;
  /** A connection string (`postgres://user:password@host:5432/db`); busbar creates a small pool and ends it on stop/close. */
  url?: string;
  /** Longest wait for a connection (from the pool or a new one): then a retryable `ConnectionError`. Default 5000. */
  connectTimeoutMs?: number;
  /**
   * Longest wait for one statement's answer: then a retryable `TimeoutError` (outcome unknown) and the
   * connection is discarded. Default 30000. Server-side limits (`statement_timeout`) are yours to set.
   */
  queryTimeoutMs?: number;
}

export interface ResolvedConnection {
  readonly pool: PoolLike;
  readonly owned: boolean;
  /** Passwords to strip from every error. */
  readonly secrets: readonly string[];
  /** For messages: the URL without its password, or 'the given pool'. */
  readonly where: string;
  readonly connectTimeoutMs: number;
  readonly queryTimeoutMs: number;
}

function timeoutOption(value: unknown, name: string, what: string, fallback: number): number {
  if (value === undefined) return fallback;
  if (typeof value !== 'number' || !Number.isInteger(value) || value <= 0 || value > 2_147_483_647) {
    throw new ConfigError(`${what}: ${name} must be a positive integer number of milliseconds`);
  }
  return value;
}

export function resolveConnection(options: ConnectionOptions, what: string, max: number): ResolvedConnection {
  if (options.pool && options.url) throw new ConfigError(`${what}: give either pool or url, not both`);
  const connectTimeoutMs = timeoutOption(
    options.connectTimeoutMs,
    'connectTimeoutMs',
    what,
    DEFAULT_CONNECT_TIMEOUT_MS,
  );
  const queryTimeoutMs = timeoutOption(options.queryTimeoutMs, 'queryTimeoutMs', what, DEFAULT_QUERY_TIMEOUT_MS);
  if (options.pool) {
    if (typeof options.pool.connect !== 'function' || typeof options.pool.query !== 'function') {
      throw new ConfigError(`${what}: pool must be a pg Pool`);
    }
    return { pool: options.pool, owned: false, secrets: [], where: 'the given pool', connectTimeoutMs, queryTimeoutMs };
  }
  if (typeof options.url !== 'string' || options.url === '') throw new ConfigError(`${what}: give a pool or a url`);
  let password = '';
  try {
    const parsed = new URL(options.url);
    password = decodeURIComponent(parsed.password);
    if (parsed.protocol !== 'postgres:' && parsed.protocol !== 'postgresql:') {
      throw new ConfigError(
        `${what}: url must start with postgres:// or postgresql://, got '${redactUrl(options.url)}'`,
      );
    }
  } catch (error) {
    if (error instanceof ConfigError) throw error;
    throw new ConfigError(`${what}: url is not a valid URL ('${redactUrl(options.url)}')`);
  }
  // pg's own bounds as well, so a timed-out connection attempt or statement is cleaned up inside the pool too.
  const pool = new pg.Pool({
    connectionString: options.url,
    max,
    connectionTimeoutMillis: connectTimeoutMs,
    query_timeout: queryTimeoutMs,
  });
  // An idle client's socket error would otherwise crash the process; the next query reports it.
  pool.on('error', () => undefined);
  return {
    pool,
    owned: true,
    secrets: password ? [password, options.url] : [],
    where: redactUrl(options.url),
    connectTimeoutMs,
    queryTimeoutMs,
  };
}

/**
 * A client from the pool within `connectTimeoutMs`, or a `ConnectionError`. A pool of the caller's may have
 * no timeout of its own: when its connect completes after busbar gave up, the client goes straight back.
 */
export function connectBounded(conn: ResolvedConnection): Promise<PooledClient> {
  return new Promise<PooledClient>((resolve, reject) => {
    let late = false;
    const timer = setTimeout(() => {
      late = true;
      reject(new ConnectionError(`No PostgreSQL connection within ${conn.connectTimeoutMs} ms (${conn.where})`));
    }, conn.connectTimeoutMs);
    conn.pool.connect().then(
      (client) => {
        clearTimeout(timer);
        if (late) client.release();
        else resolve(client);
      },
      (error: unknown) => {
        clearTimeout(timer);
        if (!late) reject(error);
      },
    );
  });
}

/** A client whose every statement is bounded by `queryTimeoutMs`; after a timeout it must be released destroyed. */
export class BoundedClient {
  readonly client: PooledClient;
  readonly #timeoutMs: number;
  /** A statement timed out: the connection may still carry its answer (or none ever), never reuse it. */
  broken = false;

  constructor(client: PooledClient, timeoutMs: number) {
    this.client = client;
    this.#timeoutMs = timeoutMs;
  }

  query(text: string, values?: unknown[]): Promise<QueryResultLike> {
    return new Promise<QueryResultLike>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.broken = true;
        reject(new TimeoutError(`PostgreSQL did not answer within ${this.#timeoutMs} ms: the outcome is unknown`));
      }, this.#timeoutMs);
      this.client.query(text, values).then(
        (result) => {
          clearTimeout(timer);
          resolve(result);
        },
        (error: unknown) => {
          clearTimeout(timer);
          reject(error);
        },
      );
    });
  }

  release(destroy = false): void {
    this.client.release(destroy || this.broken);
  }
}

/** One statement on a pooled connection, connect and answer both bounded. */
export async function queryBounded(
  conn: ResolvedConnection,
  text: string,
  values: unknown[],
): Promise<QueryResultLike> {
  const client = new BoundedClient(await connectBounded(conn), conn.queryTimeoutMs);
  let failed = false;
  // A connection that dies between statements emits 'error' on the client; unheard it would crash the process.
  const ignore = () => undefined;
  client.client.on('error', ignore);
  try {
    return await client.query(text, values);
  } catch (error) {
    failed = isBroken(error);
    throw error;
  } finally {
    client.client.removeListener('error', ignore);
    client.release(failed);
  }
}

/** Errors after which the connection is not fit for the next user. */
function isBroken(error: unknown): boolean {
  const code = (error as { code?: unknown } | null)?.code;
  // A statement error (SQLSTATE of classes other than connection ones) leaves the connection usable.
  return !(typeof code === 'string' && /^[0-9A-Z]{5}$/.test(code) && !code.startsWith('08') && !code.startsWith('57P'));
}
