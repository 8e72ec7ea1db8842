import { type BatchEntry, BusbarError, type Codec, defineTopic, type Topic } from '@busbar/core';
import type { RelayBus } from './options.js';
import type { TableName } from './sql.js';
import type { SqlClient } from './types.js';

export interface OutboxRow {
  readonly id: string;
  readonly message_id: string;
  readonly topic: string;
  readonly key: string | null;
  readonly headers: Record<string, string>;
  readonly payload: Uint8Array;
  readonly content_type: string;
}

export interface BatchResult {
  /** Rows locked by this transaction. */
  readonly fetched: number;
  /** Rows published and marked. */
  readonly published: number;
  /** Rows left for later: an older row of their key was pending outside this batch. */
  readonly deferred: number;
  /** The keys of the deferred rows: the next batch looks past them, so other keys are not held up behind them. */
  readonly heldKeys: readonly string[];
  /** Rows the bus refused for good (too large, invalid name or header): marked with `error`, not sent. */
  readonly failed: readonly { readonly id: string; readonly messageId: string; readonly error: string }[];
  readonly firstId: string;
  readonly lastId: string;
  /** A publish that failed after the others were marked: its rows stay pending. */
  readonly error?: unknown;
}

/** The statements of one table, built once. */
export interface BatchSql {
  readonly select: string;
  readonly held: string;
  readonly mark: string;
  readonly fail: string;
}

export function batchSql(table: TableName, mode: 'mark' | 'delete'): BatchSql {
  return {
    // ORDER BY names the table's bigint id: the bare alias would sort the text form ('123' < '32').
    // SKIP LOCKED lets relays share the table; re-checking published_at under the row lock drops rows another relay just committed.
    // $2: keys held back in the last batch (their older row locked by another relay): skipped for one batch, so a
    // key with many pending rows cannot fill every batch with rows that must wait.
    select: `SELECT id::text AS id, message_id, topic, key, headers, payload, content_type FROM ${table.sql}
WHERE published_at IS NULL AND (key IS NULL OR NOT (key = ANY($2::text[])))
ORDER BY ${table.sql}.id LIMIT $1 FOR UPDATE SKIP LOCKED`,
    // A row may go out only if no older pending row of its key sits outside this batch (locked by another relay,
    // or skipped): otherwise two relays could publish one key out of order.
    held: `SELECT b.id::text AS id FROM unnest($1::bigint[], $2::text[]) AS b(id, key)
WHERE b.key IS NOT NULL AND EXISTS (
  SELECT 1 FROM ${table.sql} e WHERE e.key = b.key AND e.id < b.id AND e.published_at IS NULL AND e.id <> ALL($1::bigint[]))`,
    mark:
      mode === 'mark'
        ? `UPDATE ${table.sql} SET published_at = now() WHERE id = ANY($1::bigint[])`
        : `DELETE FROM ${table.sql} WHERE id = ANY($1::bigint[])`,
    // Failed rows are kept (in both modes) with their error for inspection; retention cleanup removes them.
    fail: `UPDATE ${table.sql} AS t SET published_at = now(), error = f.error
FROM unnest($1::bigint[], $2::text[]) AS f(id, error) WHERE t.id = f.id`,
  };
}

/** Payloads were encoded at `add`: the relay hands the bytes through untouched, with the original content type. */
const topics = new Map<string, Topic<Uint8Array>>();
function passthroughTopic(name: string, contentType: string): Topic<Uint8Array> {
  const cacheKey = `${contentType}\n${name}`;
  let topic = topics.get(cacheKey);
  if (!topic) {
    const codec: Codec<Uint8Array> = { contentType, encode: (bytes) => bytes, decode: (bytes) => bytes };
    topic = defineTopic<Uint8Array>(name, undefined, { codec });
    if (topics.size < 10_000) topics.set(cacheKey, topic);
  }
  return topic;
}

/**
 * Runs inside the caller's open transaction: lock a batch, drop the rows an
 * older same-key row outside the batch must precede, publish the rest (one
 * publishBatch per topic, in id order), then mark or delete what the bus
 * confirmed. The caller commits.
 */
export async function publishBatch(
  client: SqlClient,
  sql: BatchSql,
  bus: RelayBus,
  batchSize: number,
  beforeMark: ((ids: readonly string[]) => void | Promise<void>) | undefined,
  skipKeys: readonly string[] = [],
): Promise<BatchResult> {
  const rows = (await client.query(sql.select, [batchSize, skipKeys])).rows as OutboxRow[];
  if (rows.length === 0) {
    return { fetched: 0, published: 0, deferred: 0, heldKeys: [], failed: [], firstId: '', lastId: '' };
  }
  let ready = rows;
  const heldKeys = new Set<string>();
  if (rows.some((r) => r.key !== null)) {
    const held = await client.query(sql.held, [rows.map((r) => r.id), rows.map((r) => r.key)]);
    if (held.rows.length > 0) {
      const skip = new Set((held.rows as { id: string }[]).map((r) => r.id));
      ready = rows.filter((r) => !skip.has(r.id));
      for (const r of rows) if (skip.has(r.id) && r.key !== null) heldKeys.add(r.key);
    }
  }
  // Per topic, runs of rows with one content type, in id order: a topic's runs go one after another (rows of a
  // key may sit in different runs), topics side by side.
  const byTopic = new Map<string, Run[]>();
  const failed: FailedRow[] = [];
  for (const row of ready) {
    let runs = byTopic.get(row.topic);
    if (!runs) {
      runs = [];
      byTopic.set(row.topic, runs);
    }
    const last = runs[runs.length - 1];
    if (last && last.contentType === row.content_type) {
      last.rows.push(row);
      continue;
    }
    try {
      runs.push({ contentType: row.content_type, topic: passthroughTopic(row.topic, row.content_type), rows: [row] });
    } catch (error) {
      failed.push({ row, error });
    }
  }
  const done: OutboxRow[] = [];
  let error: unknown;
  await Promise.all(
    [...byTopic.values()].map(async (runs) => {
      for (const run of runs) {
        const stop = await publishRun(bus, run, done, failed);
        if (stop !== undefined) {
          // The rest of this topic waits for the next batch: its order per key must not jump the failed run.
          error ??= stop;
          return;
        }
      }
    }),
  );
  if (done.length > 0) {
    if (beforeMark) await beforeMark(done.map((r) => r.message_id));
    await client.query(sql.mark, [done.map((r) => r.id)]);
  }
  if (failed.length > 0) {
    await client.query(sql.fail, [failed.map((f) => f.row.id), failed.map((f) => errorText(f.error))]);
  }
  done.sort((a, b) => (BigInt(a.id) < BigInt(b.id) ? -1 : 1));
  const base: BatchResult = {
    fetched: rows.length,
    published: done.length,
    deferred: rows.length - ready.length,
    heldKeys: [...heldKeys],
    failed: failed.map((f) => ({ id: f.row.id, messageId: f.row.message_id, error: errorText(f.error) })),
    firstId: done[0]?.id ?? '',
    lastId: done[done.length - 1]?.id ?? '',
  };
  return error === undefined ? base : { ...base, error };
}

interface Run {
  readonly contentType: string;
  readonly topic: Topic<Uint8Array>;
  readonly rows: OutboxRow[];
}

/**
 * Publishes one run: its rows go to `done`, rows the bus refused for good to `failed`. Returns the error that
 * stopped it (the bus is down, or refused a row for now): the rows not sent stay pending.
 */
async function publishRun(bus: RelayBus, run: Run, done: OutboxRow[], failed: FailedRow[]): Promise<unknown> {
  try {
    await bus.publishBatch(run.topic, run.rows.map(entryOf));
    done.push(...run.rows);
    return undefined;
  } catch (error) {
    if (!isPermanent(error)) return error;
  }
  // One bad row (too large, a name the broker refuses) must not block its topic: send the rows one by one.
  for (const row of run.rows) {
    try {
      await bus.publishBatch(run.topic, [entryOf(row)]);
      done.push(row);
    } catch (rowError) {
      if (!isPermanent(rowError)) return rowError;
      failed.push({ row, error: rowError });
    }
  }
  return undefined;
}

interface FailedRow {
  readonly row: OutboxRow;
  readonly error: unknown;
}

/** Errors that no retry can fix: the row itself is bad for this bus. A closed bus or a lost connection is not among them. */
const PERMANENT_CODES = new Set([
  'BUSBAR_PAYLOAD_TOO_LARGE',
  'BUSBAR_INVALID_TOPIC',
  'BUSBAR_INVALID_HEADER',
  'BUSBAR_SERIALIZATION',
  'BUSBAR_VALIDATION',
  'BUSBAR_CONFIG',
]);

/**
 * A row no retry can send: one of the codes above, a PermanentError (a publish middleware said so), or a
 * publish the broker refused as not retryable. Never a connection, auth, TLS, timeout or close: those hold
 * for every row, and marking rows failed for them would throw good messages away.
 */
function isPermanent(error: unknown): boolean {
  if (!BusbarError.is(error)) return false;
  if (PERMANENT_CODES.has(error.code) || error.code === 'BUSBAR_PERMANENT') return true;
  return error.code === 'BUSBAR_PUBLISH' && !error.retryable;
}

function errorText(error: unknown): string {
  const text = error instanceof Error ? `${error.name}: ${error.message}` : String(error);
  return text.slice(0, 1000);
}

function entryOf(row: OutboxRow): BatchEntry<Uint8Array> {
  const entry: BatchEntry<Uint8Array> = { payload: row.payload, id: row.message_id, headers: row.headers };
  if (row.key !== null) entry.key = row.key;
  return entry;
}
