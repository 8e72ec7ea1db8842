import { createHash } from 'node:crypto';
import { ConfigError } from '@busbar/core';
import { mapPgError } from './errors.js';
import type { SqlClient } from './types.js';

export const DEFAULT_OUTBOX_TABLE = 'busbar_outbox';
export const DEFAULT_IDEMPOTENCY_TABLE = 'busbar_idempotency';

const IDENT = /^[A-Za-z_][A-Za-z0-9_]{0,62}$/;

/** A validated table name, `table` or `schema.table`, with its quoted SQL form. */
export interface TableName {
  /** As the user wrote it (used in messages and the NOTIFY channel). */
  readonly name: string;
  /** Quoted for SQL: `"schema"."table"`. */
  readonly sql: string;
  /** Quoted name for an index derived from the table name, in the table's schema. */
  index(suffix: string): string;
  /** Bare quoted index name (CREATE INDEX takes no schema). */
  indexBare(suffix: string): string;
}

export function tableName(name: string): TableName {
  const parts = typeof name === 'string' ? name.split('.') : [];
  if (parts.length < 1 || parts.length > 2 || !parts.every((p) => IDENT.test(p))) {
    throw new ConfigError(
      `Invalid table name '${String(name)}': use 'table' or 'schema.table', each part 1-63 letters, digits or '_', not starting with a digit`,
    );
  }
  const quoted = parts.map((p) => `"${p}"`);
  const bare = parts[parts.length - 1] as string;
  // PostgreSQL cuts names at 63 bytes, and IF NOT EXISTS would then skip an index whose cut name is taken: a long
  // table name keeps a prefix and gets a digest of itself, so every index name stays distinct.
  const indexName = (suffix: string) => {
    const full = `${bare}_${suffix}`;
    if (full.length <= 63) return `"${full}"`;
    const digest = createHash('sha256').update(bare).digest('hex').slice(0, 8);
    return `"${bare.slice(0, 63 - suffix.length - 10)}_${digest}_${suffix}"`;
  };
  return {
    name,
    sql: quoted.join('.'),
    indexBare: indexName,
    index: (suffix) => (parts.length === 2 ? `${quoted[0]}.${indexName(suffix)}` : indexName(suffix)),
  };
}

/** Names the migration in errors: the step a user runs when a table is missing. */
export function migrationHint(kind: 'outbox' | 'idempotency', table: TableName): string {
  const option = kind === 'outbox' ? 'outboxTable' : 'idempotencyTable';
  return `run the busbar ${kind} migration: \`await migrate(client, { ${option}: '${table.name}' })\` from @busbar/postgres (SQL: ${kind === 'outbox' ? 'outboxMigrationSql' : 'idempotencyMigrationSql'}('${table.name}'))`;
}

/**
 * The outbox table. `id` orders rows by insertion (per key the relay keeps
 * this order); `message_id` is fixed at `add` so a re-sent row is a
 * duplicate consumers can recognise. The partial indexes keep the relay's
 * scans proportional to the pending rows, not to the table.
 */
export function outboxMigrationSql(name = DEFAULT_OUTBOX_TABLE): string {
  const t = tableName(name);
  return `
CREATE TABLE IF NOT EXISTS ${t.sql} (
  -- error: set (with published_at) when the bus refused the row for good; the row was not sent.
  id bigserial PRIMARY KEY,
  message_id text NOT NULL,
  topic text NOT NULL,
  key text,
  headers jsonb NOT NULL DEFAULT '{}'::jsonb,
  payload bytea NOT NULL,
  content_type text NOT NULL DEFAULT 'application/json',
  created_at timestamptz NOT NULL DEFAULT now(),
  published_at timestamptz,
  error text
);
-- Tables made before the error column existed get it here (the relay writes it).
ALTER TABLE ${t.sql} ADD COLUMN IF NOT EXISTS error text;
CREATE INDEX IF NOT EXISTS ${t.indexBare('pending')} ON ${t.sql} (id) WHERE published_at IS NULL;
CREATE INDEX IF NOT EXISTS ${t.indexBare('pending_key')} ON ${t.sql} (key, id) WHERE published_at IS NULL AND key IS NOT NULL;
CREATE INDEX IF NOT EXISTS ${t.indexBare('published')} ON ${t.sql} (published_at) WHERE published_at IS NOT NULL;
`;
}

/** The idempotency table: one row per key, a claim (`done = false`) or a record (`done = true`) until `expires_at`. */
export function idempotencyMigrationSql(name = DEFAULT_IDEMPOTENCY_TABLE): string {
  const t = tableName(name);
  return `
CREATE TABLE IF NOT EXISTS ${t.sql} (
  key text PRIMARY KEY,
  done boolean NOT NULL,
  expires_at timestamptz NOT NULL
);
CREATE INDEX IF NOT EXISTS ${t.indexBare('expires')} ON ${t.sql} (expires_at);
`;
}

export interface MigrateOptions {
  /** Outbox table (`table` or `schema.table`); `false` skips it. Default `busbar_outbox`. */
  outboxTable?: string | false;
  /** Idempotency table (`table` or `schema.table`); `false` skips it. Default `busbar_idempotency`. */
  idempotencyTable?: string | false;
}

/**
 * Creates the outbox and idempotency tables if they do not exist. Safe to run
 * at every start and from several processes at once (an advisory lock
 * serialises concurrent runs). Runs as one implicit transaction, or inside
 * the caller's transaction if `client` is in one.
 */
export async function migrate(client: SqlClient, options: MigrateOptions = {}): Promise<void> {
  const outbox = options.outboxTable ?? DEFAULT_OUTBOX_TABLE;
  const idem = options.idempotencyTable ?? DEFAULT_IDEMPOTENCY_TABLE;
  const schemas = new Set<string>();
  let body = '';
  for (const [table, sql] of [
    [outbox, outboxMigrationSql],
    [idem, idempotencyMigrationSql],
  ] as const) {
    if (table === false) continue;
    const t = tableName(table);
    if (t.name.includes('.')) schemas.add(t.sql.split('.')[0] as string);
    body += sql(table);
  }
  if (body === '') return;
  const createSchemas = [...schemas].map((s) => `CREATE SCHEMA IF NOT EXISTS ${s};`).join('\n');
  // One simple-protocol query: PostgreSQL runs its statements as a single transaction.
  const text = `SELECT pg_advisory_xact_lock(hashtext('busbar-migrate'));\n${createSchemas}\n${body}`;
  try {
    await client.query(text);
  } catch (error) {
    throw mapPgError(error, [], 'Running the busbar migration failed');
  }
}
