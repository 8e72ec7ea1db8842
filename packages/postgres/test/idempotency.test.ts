import { BusbarError, connect, silentLogger } from '@busbar/core';
import { brokerAvailable, collect, describeIdempotencyStore, sleep, uniqueName, waitFor } from '@busbar/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AlreadyProcessedError, migrate, PostgresIdempotencyStore } from '../src/index.js';
import { type TestDb, testDb, tx } from './helpers.js';

const ok = await brokerAvailable('postgres');

describe.runIf(ok)('PostgresIdempotencyStore', () => {
  let db: TestDb;
  let table: string;
  beforeAll(async () => {
    db = await testDb(12);
    table = (await db.tables()).idempotencyTable;
  });
  afterAll(async () => {
    await db?.close();
  });

  // Two store instances over one table stand for two consumer processes.
  describeIdempotencyStore('postgres', () => new PostgresIdempotencyStore({ pool: db.pool, table }));

  it('completeIn commits the key with the business write', async () => {
    const store = new PostgresIdempotencyStore({ pool: db.pool, table });
    await db.pool.query(`CREATE TABLE IF NOT EXISTS ${db.schema}.charges (id text)`);
    const key = `payments:${uniqueName('m')}`;
    expect(await store.claim(key, 5_000)).toBe('claimed');
    await tx(db.pool, async (c) => {
      await c.query(`INSERT INTO ${db.schema}.charges VALUES ($1)`, [key]);
      await store.completeIn(c, key, 60_000);
    });
    expect(await store.claim(key, 5_000)).toBe('done');
    // Core's complete() afterwards is harmless.
    await store.complete(key, 60_000);
    expect(await store.claim(key, 5_000)).toBe('done');
  });

  it('completeIn rolls back the key with the business write', async () => {
    const store = new PostgresIdempotencyStore({ pool: db.pool, table });
    await db.pool.query(`CREATE TABLE IF NOT EXISTS ${db.schema}.charges (id text)`);
    const key = `payments:${uniqueName('m')}`;
    expect(await store.claim(key, 5_000)).toBe('claimed');
    await expect(
      tx(db.pool, async (c) => {
        await c.query(`INSERT INTO ${db.schema}.charges VALUES ($1)`, [key]);
        await store.completeIn(c, key, 60_000);
        throw new Error('card declined');
      }),
    ).rejects.toThrow('card declined');
    expect(
      (await db.pool.query(`SELECT count(*)::int AS n FROM ${db.schema}.charges WHERE id = $1`, [key])).rows[0].n,
    ).toBe(0);
    // Still only claimed: the failed attempt releases it and the retry claims it again.
    expect(await store.claim(key, 5_000)).toBe('busy');
    await store.release(key);
    expect(await store.claim(key, 5_000)).toBe('claimed');
  });

  it('completeIn: of two attempts whose claims overlapped (lease lapsed), only one commits', async () => {
    const store = new PostgresIdempotencyStore({ pool: db.pool, table });
    const key = `payments:${uniqueName('m')}`;
    const a = await db.pool.connect();
    const b = await db.pool.connect();
    try {
      await a.query('BEGIN');
      await b.query('BEGIN');
      await store.completeIn(a, key, 60_000);
      const second = store.completeIn(b, key, 60_000).then(
        () => 'recorded',
        (e: unknown) => e,
      );
      await sleep(200); // b waits on a's row lock
      await a.query('COMMIT');
      const outcome = await second;
      expect(outcome).toBeInstanceOf(AlreadyProcessedError);
      expect(BusbarError.is(outcome)).toBe(true);
      expect((outcome as BusbarError).retryable).toBe(true);
      await b.query('ROLLBACK');
    } finally {
      a.release();
      b.release();
    }
    expect(await store.claim(key, 5_000)).toBe('done');
  });

  it('end to end: a redelivered message is applied once, with the dedup record in the handler transaction', async () => {
    const store = new PostgresIdempotencyStore({ pool: db.pool, table });
    await db.pool.query(`CREATE TABLE IF NOT EXISTS ${db.schema}.ledger (message_id text, amount int)`);
    const bus = await connect({ url: `memory://${uniqueName('idem')}`, logger: silentLogger });
    try {
      const topic = uniqueName('payments');
      let failOnce = true;
      const runs = collect<string>();
      await bus.subscribe(
        topic,
        async (m, ctx) => {
          runs.push(m.id);
          await tx(db.pool, async (c) => {
            await c.query(`INSERT INTO ${db.schema}.ledger VALUES ($1, $2)`, [
              m.id,
              (m.payload as { amount: number }).amount,
            ]);
            await store.completeIn(c, ctx.idempotencyKey);
            if (failOnce) {
              failOnce = false;
              throw new Error('crash after the write, before commit');
            }
          });
        },
        { group: 'ledger', idempotency: { store }, retry: { maxAttempts: 5, initialDelayMs: 10 } },
      );
      await bus.publish(topic, { amount: 7 }, { id: 'pay-1' });
      await bus.publish(topic, { amount: 7 }, { id: 'pay-1' }); // a re-sent outbox row
      await runs.waitForCount(2, 5_000);
      await sleep(300);
      expect(runs.items).toEqual(['pay-1', 'pay-1']); // the failed attempt and its retry; the duplicate never ran
      const rows = (await db.pool.query(`SELECT * FROM ${db.schema}.ledger`)).rows;
      expect(rows).toEqual([{ message_id: 'pay-1', amount: 7 }]);
    } finally {
      await bus.close();
    }
  });

  it('completeIn without a key says what is missing', async () => {
    const store = new PostgresIdempotencyStore({ pool: db.pool, table });
    await expect(store.completeIn(db.pool, undefined)).rejects.toThrow(/idempotency key/);
  });

  it('purges expired entries', async () => {
    const store = new PostgresIdempotencyStore({ pool: db.pool, table });
    const key = `g:${uniqueName('m')}`;
    await store.complete(key, 1);
    await sleep(20);
    expect(await store.purgeExpired()).toBeGreaterThanOrEqual(1);
    expect((await db.pool.query(`SELECT count(*)::int AS n FROM ${table} WHERE key = $1`, [key])).rows[0].n).toBe(0);
  });

  it('names the migration when its table is missing', async () => {
    const store = new PostgresIdempotencyStore({ pool: db.pool, table: db.table('missing') });
    const error = await store.claim('k', 1_000).catch((e: unknown) => e);
    expect(BusbarError.is(error, 'BUSBAR_CONFIG')).toBe(true);
    expect((error as Error).message).toContain(`migrate(client, { idempotencyTable: '${db.table('missing')}' })`);
    await migrate(db.pool, { outboxTable: false, idempotencyTable: db.table('missing') });
    await waitFor(async () => (await store.claim('k', 1_000)) === 'claimed', 2_000, 'claim after migrate');
  });

  it('rejects unknown options', () => {
    expect(() => new PostgresIdempotencyStore({ pool: db.pool, tabel: 'x' } as never)).toThrow(
      /unknown option 'tabel'/,
    );
    expect(() => new PostgresIdempotencyStore({} as never)).toThrow(/pool or a url/);
  });
});
