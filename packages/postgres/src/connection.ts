import { ConfigError, redactUrl } from '@busbar/core';
import pg from 'pg';
import type { PoolLike } from './types.js';

export interface ConnectionOptions {
  /** A pool you own (pg `Pool`); busbar borrows clients and never ends it. */
  pool?: PoolLike;
  /** A connection string (`postgres://user:password@host:5432/db`); busbar creates a small pool and ends it on stop/close. */
  url?: string;
}

export interface ResolvedConnection {
  readonly pool: PoolLike;
  readonly owned: boolean;
  /** Passwords to strip from every error. */
  readonly secrets: readonly string[];
  /** For messages: the URL without its password, or 'the given pool'. */
  readonly where: string;
}

export function resolveConnection(options: ConnectionOptions, what: string, max: number): ResolvedConnection {
  if (options.pool && options.url) throw new ConfigError(`${what}: give either pool or url, not both`);
  if (options.pool) {
    if (typeof options.pool.connect !== 'function' || typeof options.pool.query !== 'function') {
      throw new ConfigError(`${what}: pool must be a pg Pool`);
    }
    return { pool: options.pool, owned: false, secrets: [], where: 'the given pool' };
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
  const pool = new pg.Pool({ connectionString: options.url, max, connectionTimeoutMillis: 10_000 });
  // An idle client's socket error would otherwise crash the process; the next query reports it.
  pool.on('error', () => undefined);
  return { pool, owned: true, secrets: password ? [password, options.url] : [], where: redactUrl(options.url) };
}
