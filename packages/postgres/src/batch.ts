import { type BatchEntry, type Codec, defineTopic, type Topic } from '@busbar/core';
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
}

export function batchSql(table: TableName, mode: 'mark' | 'delete'): BatchSql {
  return {
    // ORDER BY names the table's bigint id: the bare alias would sort the text form ('123' < '32').
    // SKIP LOCKED lets relays share the table; re-checking published_at under the row lock drops rows another relay just committed.
    select: `SELECT id::text AS id, message_id, topic, key, headers, payload, content_type FROM ${table.sql}
WHERE published_at IS NULL ORDER BY ${table.sql}.id LIMIT $1 FOR UPDATE SKIP LOCKED`,
    // A row may go out only if no older pending row of its key sits outside this batch (locked by another relay,
    // or skipped): otherwise two relays could publish one key out of order.
    held: `SELECT b.id::text AS id FROM unnest($1::bigint[], $2::text[]) AS b(id, key)
WHERE b.key IS NOT NULL AND EXISTS (
  SELECT 1 FROM ${table.sql} e WHERE e.key = b.key AND e.id < b.id AND e.published_at IS NULL AND e.id <> ALL($1::bigint[]))`,
    mark:
      mode === 'mark'
        ? `UPDATE ${table.sql} SET published_at = now() WHERE id = ANY($1::bigint[])`
        : `DELETE FROM ${table.sql} WHERE id = ANY($1::bigint[])`,
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
): Promise<BatchResult> {
  const rows = (await client.query(sql.select, [batchSize])).rows as OutboxRow[];
  if (rows.length === 0) return { fetched: 0, published: 0, deferred: 0, firstId: '', lastId: '' };
  let ready = rows;
  if (rows.some((r) => r.key !== null)) {
    const held = await client.query(sql.held, [rows.map((r) => r.id), rows.map((r) => r.key)]);
    if (held.rows.length > 0) {
      const skip = new Set((held.rows as { id: string }[]).map((r) => r.id));
      ready = rows.filter((r) => !skip.has(r.id));
    }
  }
  const groups = new Map<string, { topic: Topic<Uint8Array>; rows: OutboxRow[] }>();
  for (const row of ready) {
    const groupKey = `${row.content_type}\n${row.topic}`;
    let group = groups.get(groupKey);
    if (!group) {
      group = { topic: passthroughTopic(row.topic, row.content_type), rows: [] };
      groups.set(groupKey, group);
    }
    group.rows.push(row);
  }
  const results = await Promise.allSettled(
    [...groups.values()].map((group) =>
      bus.publishBatch(
        group.topic,
        group.rows.map((row): BatchEntry<Uint8Array> => {
          const entry: BatchEntry<Uint8Array> = { payload: row.payload, id: row.message_id, headers: row.headers };
          if (row.key !== null) entry.key = row.key;
          return entry;
        }),
      ),
    ),
  );
  const done: OutboxRow[] = [];
  let error: unknown;
  let i = 0;
  for (const group of groups.values()) {
    const result = results[i++] as PromiseSettledResult<unknown>;
    if (result.status === 'fulfilled') done.push(...group.rows);
    else error ??= result.reason;
  }
  if (done.length > 0) {
    if (beforeMark) await beforeMark(done.map((r) => r.message_id));
    await client.query(sql.mark, [done.map((r) => r.id)]);
  }
  const base = {
    fetched: rows.length,
    published: done.length,
    deferred: rows.length - ready.length,
    firstId: done[0]?.id ?? '',
    lastId: done[done.length - 1]?.id ?? '',
  };
  return error === undefined ? base : { ...base, error };
}
