import { connect, silentLogger } from '@busbar/core';
import { brokerAvailable, brokerUrls, collect, uniqueName } from '@busbar/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createOutbox, createRelay, PostgresIdempotencyStore } from '../src/index.js';
import { type TestDb, testDb, tx } from './helpers.js';

const ok = (await brokerAvailable('postgres')) && (await brokerAvailable('redis'));

describe.runIf(ok)('relay through a real broker (Redis Streams)', () => {
  let db: TestDb;
  beforeAll(async () => {
    db = await testDb();
  });
  afterAll(async () => {
    await db?.close();
  });

  it('publishes rows with confirms, re-sends after a crash, the consumer applies each once', {
    timeout: 60_000,
  }, async () => {
    const { outboxTable, idempotencyTable } = await db.tables();
    const box = createOutbox({ table: outboxTable });
    const store = new PostgresIdempotencyStore({ pool: db.pool, table: idempotencyTable });
    await db.pool.query(`CREATE TABLE ${db.schema}.applied (message_id text, seq int)`);
    const bus = await connect({ url: brokerUrls.redis, logger: silentLogger });
    const topic = uniqueName('outbox');
    const group = uniqueName('g');
    const arrivals = collect<string>();
    let crashed = false;
    const relay = createRelay({
      pool: db.pool,
      bus,
      table: outboxTable,
      pollIntervalMs: 100,
      beforeMark: () => {
        if (!crashed) {
          crashed = true;
          throw new Error('relay crashed after the confirm');
        }
      },
    });
    try {
      const sub = await bus.subscribe(
        topic,
        async (m, ctx) => {
          arrivals.push(m.id);
          await tx(db.pool, async (c) => {
            await c.query(`INSERT INTO ${db.schema}.applied VALUES ($1, $2)`, [
              m.id,
              (m.payload as { seq: number }).seq,
            ]);
            await store.completeIn(c, ctx.idempotencyKey);
          });
        },
        { group, idempotency: { store } },
      );
      const ids = await tx(db.pool, async (c) => {
        const out: string[] = [];
        for (let seq = 1; seq <= 20; seq++) out.push(await box.add(c, topic, { seq }, { key: 'order-1' }));
        return out;
      });
      await relay.start();
      await arrivals.waitForCount(20, 20_000);
      await new Promise((r) => setTimeout(r, 500));
      const applied = (await db.pool.query(`SELECT message_id, seq FROM ${db.schema}.applied ORDER BY seq`)).rows;
      expect(applied.map((r) => r.message_id)).toEqual(ids);
      expect(crashed).toBe(true);
      await sub.close();
    } finally {
      await relay.stop();
      await bus.close();
    }
  });
});
