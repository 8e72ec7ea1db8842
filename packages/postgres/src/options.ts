import { type Bus, ConfigError } from '@busbar/core';
import { z } from 'zod';
import { DEFAULT_OUTBOX_TABLE } from './sql.js';
import type { PoolLike } from './types.js';

/** What the relay needs of a bus: `publishBatch` (any busbar `Bus`). */
export type RelayBus = Pick<Bus, 'publishBatch'>;

const isPool = (v: unknown): v is PoolLike =>
  typeof v === 'object' &&
  v !== null &&
  typeof (v as PoolLike).connect === 'function' &&
  typeof (v as PoolLike).query === 'function';
const isBus = (v: unknown): v is RelayBus =>
  typeof v === 'object' && v !== null && typeof (v as RelayBus).publishBatch === 'function';
const ms = () => z.number().int().nonnegative();

export const relayOptionsSchema = z
  .strictObject({
    /** A pg Pool the relay borrows clients from (one is held for LISTEN while running). */
    pool: z.custom<PoolLike>(isPool, 'must be a pg Pool').optional(),
    /** Or a connection string: the relay creates its own small pool and ends it on stop(). */
    url: z.string().min(1).optional(),
    /** Longest wait for a PostgreSQL connection: then the batch fails with a retryable ConnectionError. */
    connectTimeoutMs: z.number().int().positive().max(2_147_483_647).optional(),
    /** Longest wait for one statement's answer: then a retryable TimeoutError and the connection is discarded. */
    queryTimeoutMs: z.number().int().positive().max(2_147_483_647).optional(),
    /** The bus rows are published through (any transport). */
    bus: z.custom<RelayBus>(isBus, 'must be a busbar Bus'),
    /** Outbox table, `table` or `schema.table`. */
    table: z.string().default(DEFAULT_OUTBOX_TABLE),
    /** Rows per transaction (one publishBatch per topic in it). */
    batchSize: z.number().int().min(1).max(10_000).default(100),
    /** Poll this often when no NOTIFY arrives (missed notifications, listener down). */
    pollIntervalMs: ms().min(10).default(1_000),
    /** `mark`: set published_at and keep the row until retentionMs; `delete`: delete it in the publishing transaction. */
    mode: z.enum(['mark', 'delete']).default('mark'),
    /** Published rows (mark mode) and failed rows (both modes) older than this are deleted. */
    retentionMs: ms().default(7 * 24 * 3600_000),
    /** How often the retention cleanup runs (0 disables it). */
    cleanupIntervalMs: ms().default(60_000),
    /**
     * How often the LISTEN connection is asked `SELECT 1` (bounded by the query timeout): one gone silent (a
     * dropped NAT entry, a peer that stopped) is replaced instead of leaving the relay on polling for good.
     */
    listenCheckIntervalMs: ms().min(10).default(30_000),
    /** Longest wait between retries after a failed batch (the wait doubles from pollIntervalMs/4). */
    maxBackoffMs: ms().min(10).default(30_000),
    /** Name in events (default: a random one). */
    name: z.string().min(1).max(100).optional(),
    /**
     * Called after the bus confirmed a batch and before its rows are marked,
     * with their message ids. For tests and tracing: throwing rolls the batch
     * back, as a crash would, and the rows are sent again.
     */
    beforeMark: z.custom<(ids: readonly string[]) => void | Promise<void>>((v) => typeof v === 'function').optional(),
  })
  .refine((o) => (o.pool === undefined) !== (o.url === undefined), {
    message: 'give either pool or url',
    path: ['pool'],
  });

export type RelayOptions = z.input<typeof relayOptionsSchema>;
export type ResolvedRelayOptions = z.output<typeof relayOptionsSchema>;

export function parse<S extends z.ZodType>(schema: S, value: unknown, what: string): z.output<S> {
  const result = schema.safeParse(value);
  if (result.success) return result.data;
  const lines = result.error.issues.slice(0, 8).map((issue) => {
    const path = issue.path.length > 0 ? issue.path.map(String).join('.') : '(root)';
    if (issue.code === 'unrecognized_keys')
      return `unknown option${issue.keys.length > 1 ? 's' : ''} ${issue.keys.map((k) => `'${k}'`).join(', ')}`;
    return `${path}: ${issue.message}`;
  });
  throw new ConfigError(`Invalid ${what}: ${lines.join('; ')}`);
}
