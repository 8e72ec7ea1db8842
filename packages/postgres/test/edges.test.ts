import { BusbarError, connect, silentLogger } from '@busbar/core';
import { brokerAvailable, uniqueName } from '@busbar/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createOutbox, createRelay, migrate, PostgresIdempotencyStore } from '../src/index.js';
import { type TestDb, testDb, tx } from './helpers.js';

const ok = await brokerAvailable('postgres');

describe.runIf(ok || process.env.CI === 'true')('postgres: edges an audit found', () => {
  let db: TestDb;
  beforeAll(async () => {
    db = await testDb();
  });
  afterAll(async () => {
    await db?.close();
  });

  it('migrate() gives an outbox table of the first release its error column', async () => {
    const table = db.table('old_outbox');
    await db.pool.query(`CREATE TABLE ${table} (
      id bigserial PRIMARY KEY, message_id text NOT NULL, topic text NOT NULL, key text,
      headers jsonb NOT NULL DEFAULT '{}'::jsonb, payload bytea NOT NULL,
      content_type text NOT NULL DEFAULT 'application/json', created_at timestamptz NOT NULL DEFAULT now(),
      published_at timestamptz)`);
    await migrate(db.pool, { outboxTable: table, idempotencyTable: false });
    const columns = await db.pool.query(
      `SELECT column_name FROM information_schema.columns WHERE table_schema = $1 AND table_name = 'old_outbox'`,
      [db.schema],
    );
    expect(columns.rows.map((r) => r.column_name)).toContain('error');
  });

  it('long table names keep every index (PostgreSQL cuts names at 63 bytes)', async () => {
    const name = `o${'x'.repeat(60)}`;
    await migrate(db.pool, { outboxTable: db.table(name), idempotencyTable: db.table(`i${'y'.repeat(62)}`) });
    const indexes = await db.pool.query(`SELECT tablename, indexname FROM pg_indexes WHERE schemaname = $1`, [
      db.schema,
    ]);
    const of = (t: string) => indexes.rows.filter((r) => r.tablename === t).length;
    expect(of(name)).toBe(4);
    expect(of(`i${'y'.repeat(62)}`)).toBe(2);
  });

  it('idempotency keys PostgreSQL text cannot hold (NUL, lone surrogates, very long) are claimed as distinct keys', async () => {
    const { idempotencyTable } = await db.tables();
    const store = new PostgresIdempotencyStore({ pool: db.pool, table: idempotencyTable });
    for (const key of ['g:a\u0000b', 'g:\ud800', 'g:\udfff', `g:${'k'.repeat(5_000)}`, `g:${'k'.repeat(5_001)}`]) {
      expect(await store.claim(key, 60_000)).toBe('claimed');
      await store.complete(key, 60_000);
      expect(await store.claim(key, 60_000)).toBe('done');
    }
    await store.close();
    const closed = await store.claim('g:x', 1_000).catch((e: unknown) => e);
    expect(BusbarError.is(closed, 'BUSBAR_CLOSED')).toBe(true);
  });

  it('outbox.add refuses a key with NUL or a lone surrogate before any statement, so the transaction stays usable', async () => {
    const { outboxTable } = await db.tables();
    const box = createOutbox({ table: outboxTable });
    await tx(db.pool, async (c) => {
      for (const key of ['a\u0000b', 'x\ud800']) {
        const error = await box.add(c, 'orders', 1, { key }).catch((e: unknown) => e);
        expect(BusbarError.is(error, 'BUSBAR_CONFIG')).toBe(true);
      }
      await box.add(c, 'orders', 1, { key: 'fine' });
    });
    expect((await db.pool.query(`SELECT count(*)::int AS n FROM ${outboxTable}`)).rows[0].n).toBe(1);
  });

  it('relay.cleanup() rejects when the cleanup failed', async () => {
    const { outboxTable } = await db.tables();
    const bus = await connect({ url: `memory://${uniqueName('pg-edges')}`, logger: silentLogger });
    const relay = createRelay({ pool: db.pool, bus, table: outboxTable, pollIntervalMs: 60_000 });
    try {
      await relay.start();
      await relay.cleanup();
      await db.pool.query(`DROP TABLE ${outboxTable}`);
      const error = await relay.cleanup().catch((e: unknown) => e);
      expect(BusbarError.is(error, 'BUSBAR_CONFIG')).toBe(true);
    } finally {
      await relay.stop();
      await bus.close();
    }
  });
});
