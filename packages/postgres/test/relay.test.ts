import diagnostics from 'node:diagnostics_channel';
import { type Bus, connect, defineTopic, PermanentError, PublishError, silentLogger, stringCodec } from '@busbar/core';
import { brokerAvailable, brokerUrls, collect, sleep, uniqueName, waitFor } from '@busbar/testing';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { z } from 'zod';
import {
  createOutbox,
  createRelay,
  OUTBOX_CHANNEL,
  type OutboxEvent,
  PostgresIdempotencyStore,
  type Relay,
} from '../src/index.js';
import { type TestDb, testDb, tx } from './helpers.js';

const ok = await brokerAvailable('postgres');

describe.runIf(ok)('outbox relay', () => {
  let db: TestDb;
  let bus: Bus;
  const relays: Relay[] = [];
  const events: OutboxEvent[] = [];
  const onEvent = (e: unknown) => events.push(e as OutboxEvent);

  beforeAll(async () => {
    db = await testDb();
    bus = await connect({ url: `memory://${uniqueName('pg-relay')}`, logger: silentLogger });
    diagnostics.subscribe(OUTBOX_CHANNEL, onEvent);
  });
  afterEach(async () => {
    await Promise.all(relays.splice(0).map((r) => r.stop()));
  });
  afterAll(async () => {
    diagnostics.unsubscribe(OUTBOX_CHANNEL, onEvent);
    await bus?.close();
    await db?.close();
  });

  const relay = (options: Omit<Parameters<typeof createRelay>[0], 'bus' | 'pool'> & { bus?: Bus }): Relay => {
    const r = createRelay({ pool: db.pool, bus, ...options });
    relays.push(r);
    return r;
  };
  const Paid = (topic: string) => defineTopic(topic, z.object({ orderId: z.string(), n: z.number() }));

  it('publishes committed rows with their fixed id, key, headers and payload', async () => {
    const { outboxTable } = await db.tables();
    const box = createOutbox({ table: outboxTable });
    const topic = Paid(uniqueName('orders'));
    const got = collect<{ id: string; key: string | undefined; headers: Record<string, string>; payload: unknown }>();
    await bus.subscribe(
      topic,
      (m) => got.push({ id: m.id, key: m.key, headers: { ...m.headers }, payload: m.payload }),
      { group: 'g' },
    );
    const id = await tx(db.pool, (c) =>
      box.add(c, topic, { orderId: 'o-1', n: 1 }, { key: 'o-1', headers: { tenant: 'acme' } }),
    );
    await relay({ table: outboxTable, pollIntervalMs: 60_000 }).start();
    await got.waitForCount(1, 5_000);
    expect(got.items).toEqual([{ id, key: 'o-1', headers: { tenant: 'acme' }, payload: { orderId: 'o-1', n: 1 } }]);
    await waitFor(
      async () => (await db.pool.query(`SELECT published_at FROM ${outboxTable}`)).rows[0].published_at !== null,
      5_000,
      'marked',
    );
  });

  it('is woken by NOTIFY at commit (no waiting for the poll)', async () => {
    const { outboxTable } = await db.tables();
    const box = createOutbox({ table: outboxTable });
    const topic = uniqueName('wake');
    const got = collect<string>();
    await bus.subscribe(topic, (m) => got.push(m.id), { group: 'g' });
    await relay({ table: outboxTable, pollIntervalMs: 600_000 }).start();
    await sleep(200);
    const started = Date.now();
    const id = await tx(db.pool, (c) => box.add(c, topic, { a: 1 }));
    await got.waitForCount(1, 3_000);
    expect(got.items).toEqual([id]);
    expect(Date.now() - started).toBeLessThan(2_000);
  });

  it('re-opens its LISTEN connection when the session is killed', async () => {
    const { outboxTable } = await db.tables();
    const box = createOutbox({ table: outboxTable });
    const topic = uniqueName('relisten');
    const got = collect<string>();
    await bus.subscribe(topic, (m) => got.push(m.id), { group: 'g' });
    await relay({ table: outboxTable, pollIntervalMs: 600_000, name: 'relisten' }).start();
    const listeners = async () =>
      (
        await db.pool.query(`SELECT pid FROM pg_stat_activity WHERE query = $1`, [
          `LISTEN "busbar_outbox:${outboxTable}"`,
        ])
      ).rows.map((r) => r.pid as number);
    const [first] = await listeners();
    expect(first).toBeTypeOf('number');
    await db.pool.query('SELECT pg_terminate_backend($1)', [first]);
    await waitFor(
      () => events.some((e) => e.type === 'error' && e.relay === 'relisten' && e.stage === 'listen'),
      5_000,
      'listen error',
    );
    await waitFor(async () => (await listeners()).some((pid) => pid !== first), 5_000, 'a new LISTEN session');
    const id = await tx(db.pool, (c) => box.add(c, topic, 1));
    await got.waitForCount(1, 3_000);
    expect(got.items).toEqual([id]);
  });

  it('replaces a LISTEN connection that stops answering (its backend stopped, the socket still open)', async () => {
    const { outboxTable } = await db.tables();
    const box = createOutbox({ table: outboxTable });
    const topic = uniqueName('silentlisten');
    const got = collect<string>();
    await bus.subscribe(topic, (m) => got.push(m.id), { group: 'g' });
    const r = relay({ table: outboxTable, pollIntervalMs: 60_000, listenCheckIntervalMs: 200, queryTimeoutMs: 300 });
    await r.start();
    const listener = async () =>
      (
        await db.pool.query(`SELECT pid FROM pg_stat_activity WHERE query LIKE 'LISTEN %' AND query LIKE $1`, [
          `%${outboxTable.split('.')[1]}%`,
        ])
      ).rows.map((row) => Number(row.pid));
    const [pid] = await listener();
    expect(pid).toBeGreaterThan(0);
    // The backend stops (as a peer behind a dropped NAT entry would): the socket stays open, nothing answers.
    process.kill(pid as number, 'SIGSTOP');
    try {
      await sleep(1_500);
      await tx(db.pool, (c) => box.add(c, topic, 1, { id: 'after-silence' }));
      // The poll is a minute away: only a new LISTEN connection delivers this soon.
      await got.waitForCount(1, 5_000);
    } finally {
      process.kill(pid as number, 'SIGCONT');
      await db.pool.query('SELECT pg_terminate_backend($1)', [pid]).catch(() => undefined);
    }
  });

  it('falls back to polling for rows written without a NOTIFY', async () => {
    const { outboxTable } = await db.tables();
    const topic = uniqueName('poll');
    const got = collect<string>();
    await bus.subscribe(topic, (m) => got.push(m.id), { group: 'g' });
    await relay({ table: outboxTable, pollIntervalMs: 200 }).start();
    await sleep(100);
    await db.pool.query(`INSERT INTO ${outboxTable} (message_id, topic, payload) VALUES ('raw-1', $1, '"x"'::bytea)`, [
      topic,
    ]);
    await got.waitForCount(1, 3_000);
    expect(got.items).toEqual(['raw-1']);
  });

  it('does not skip a lower id that commits after a higher one', async () => {
    const { outboxTable } = await db.tables();
    const box = createOutbox({ table: outboxTable });
    const topic = uniqueName('late');
    const got = collect<string>();
    await bus.subscribe(topic, (m) => got.push(m.id), { group: 'g' });
    await relay({ table: outboxTable, pollIntervalMs: 100 }).start();
    const slow = await db.pool.connect();
    try {
      await slow.query('BEGIN');
      const lowId = await box.add(slow, topic, { which: 'low' }, { id: 'low' });
      const highId = await tx(db.pool, (c) => box.add(c, topic, { which: 'high' }, { id: 'high' }));
      await got.waitForCount(1, 3_000);
      expect(got.items).toEqual([highId]);
      const ids = (await db.pool.query(`SELECT id::int, message_id FROM ${outboxTable} ORDER BY id`)).rows;
      expect(ids.map((r) => r.message_id)).toEqual(['high']); // 'low' is not visible yet...
      await slow.query('COMMIT');
      await got.waitForCount(2, 3_000);
      expect(got.items).toEqual([highId, lowId]);
      const all = (await db.pool.query(`SELECT id::int, message_id FROM ${outboxTable} ORDER BY id`)).rows;
      expect(all.map((r) => r.message_id)).toEqual(['low', 'high']); // ...though its id is lower
    } finally {
      slow.release();
    }
  });

  it('re-sends a batch whose relay died between the broker confirm and the commit; the idempotent consumer applies it once', async () => {
    const { outboxTable, idempotencyTable } = await db.tables();
    const box = createOutbox({ table: outboxTable });
    const store = new PostgresIdempotencyStore({ pool: db.pool, table: idempotencyTable });
    await db.pool.query(`CREATE TABLE ${db.schema}.payments (order_id text, message_id text)`);
    const topic = Paid(uniqueName('pay'));
    const arrivals = collect<string>();
    await bus.subscribe(topic, (m) => arrivals.push(m.id), { group: 'audit' });
    await bus.subscribe(
      topic,
      async (m, ctx) => {
        await tx(db.pool, async (c) => {
          await c.query(`INSERT INTO ${db.schema}.payments VALUES ($1, $2)`, [m.payload.orderId, m.id]);
          await store.completeIn(c, ctx.idempotencyKey);
        });
      },
      { group: 'payments', idempotency: { store } },
    );
    // First crash: the relay process dies (the hook throws) after the confirm, before marking.
    // Second crash: its database session is killed at the same point.
    let calls = 0;
    const r = relay({
      table: outboxTable,
      pollIntervalMs: 100,
      beforeMark: async () => {
        calls++;
        if (calls === 1) throw new Error('relay crashed');
        if (calls === 2) {
          await db.pool.query(
            `SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE state = 'idle in transaction' AND query LIKE $1`,
            [`%"${outboxTable.replace('.', '"."')}"%SKIP LOCKED%`],
          );
        }
      },
    });
    const id = await tx(db.pool, (c) => box.add(c, topic, { orderId: 'o-9', n: 9 }));
    await r.start();
    await arrivals.waitForCount(3, 10_000);
    await waitFor(
      async () => (await db.pool.query(`SELECT published_at FROM ${outboxTable}`)).rows[0].published_at !== null,
      10_000,
      'marked',
    );
    await sleep(300);
    expect(arrivals.items).toEqual([id, id, id]);
    const payments = (await db.pool.query(`SELECT * FROM ${db.schema}.payments`)).rows;
    expect(payments).toEqual([{ order_id: 'o-9', message_id: id }]);
    expect(events.filter((e) => e.type === 'error' && e.stage === 'batch').length).toBeGreaterThanOrEqual(2);
  });

  it('holds a row while an older row of its key is locked elsewhere (another relay), others flow', async () => {
    const { outboxTable } = await db.tables();
    const box = createOutbox({ table: outboxTable });
    const topic = uniqueName('hold');
    const got = collect<string>();
    await bus.subscribe(topic, (m) => got.push(m.id), { group: 'g' });
    await tx(db.pool, async (c) => {
      await box.add(c, topic, 1, { key: 'a', id: 'a1' });
      await box.add(c, topic, 2, { key: 'a', id: 'a2' });
      await box.add(c, topic, 3, { key: 'b', id: 'b1' });
      await box.add(c, topic, 4, { id: 'nokey' });
    });
    // Stands for another relay in the middle of its batch: it holds 'a1' locked.
    const other = await db.pool.connect();
    try {
      await other.query('BEGIN');
      await other.query(`SELECT id FROM ${outboxTable} WHERE message_id = 'a1' FOR UPDATE`);
      await relay({ table: outboxTable, pollIntervalMs: 100 }).start();
      await got.waitForCount(2, 3_000);
      await sleep(300);
      expect(got.items).toEqual(['b1', 'nokey']);
      await other.query('ROLLBACK');
      await got.waitForCount(4, 3_000);
      expect(got.items).toEqual(['b1', 'nokey', 'a1', 'a2']);
    } finally {
      other.release();
    }
  });

  it('marks a row the bus refuses for good (too large, bad topic) as failed; the rest of its topic and key flows', async () => {
    const { outboxTable } = await db.tables();
    const box = createOutbox({ table: outboxTable });
    const small = await connect({
      url: `memory://${uniqueName('small')}`,
      logger: silentLogger,
      maxPayloadBytes: 1_000,
    });
    try {
      const topic = uniqueName('poison');
      const got = collect<string>();
      await small.subscribe(topic, (m) => got.push(m.id), { group: 'g' });
      await tx(db.pool, async (c) => {
        await box.add(c, topic, 'first', { key: 'k', id: 'first' });
        await box.add(c, topic, 'x'.repeat(5_000), { key: 'k', id: 'too-big' });
        await box.add(c, topic, 'last', { key: 'k', id: 'last' });
      });
      await db.pool.query(
        `INSERT INTO ${outboxTable} (message_id, topic, payload) VALUES ('bad-topic', 'no spaces allowed', '"x"'::bytea)`,
      );
      await relay({ table: outboxTable, bus: small, pollIntervalMs: 100, name: 'poison-relay' }).start();
      await got.waitForCount(2, 5_000);
      expect(got.items).toEqual(['first', 'last']);
      // The relay marks rows after the bus confirmed them, which on memory:// can be after the delivery.
      const read = async () =>
        (await db.pool.query(`SELECT message_id, error, published_at FROM ${outboxTable} ORDER BY id`)).rows;
      await waitFor(async () => (await read()).every((r) => r.published_at !== null), 5_000, 'every row marked');
      const rows = await read();
      expect(rows.map((r) => [r.message_id, r.published_at !== null, r.error?.split(':')[0] ?? null])).toEqual([
        ['first', true, null],
        ['too-big', true, 'PayloadTooLargeError'],
        ['last', true, null],
        ['bad-topic', true, 'InvalidTopicError'],
      ]);
      const failed = events.filter((e) => e.type === 'failed' && e.relay === 'poison-relay');
      expect(failed.map((e) => (e.type === 'failed' ? e.messageId : '')).sort()).toEqual(['bad-topic', 'too-big']);
    } finally {
      await small.close();
    }
  });

  it('a key with a whole batch of rows held behind a locked one does not stop other keys', async () => {
    const { outboxTable } = await db.tables();
    const box = createOutbox({ table: outboxTable });
    const topic = uniqueName('holdmany');
    const got = collect<string>();
    await bus.subscribe(topic, (m) => got.push(m.id), { group: 'g' });
    await tx(db.pool, async (c) => {
      for (let n = 0; n < 11; n++) await box.add(c, topic, n, { key: 'K', id: `K-${n}` });
      await box.add(c, topic, 11, { key: 'J', id: 'J-0' });
      await box.add(c, topic, 12, { id: 'nokey' });
    });
    const other = await db.pool.connect();
    try {
      await other.query('BEGIN');
      await other.query(`SELECT id FROM ${outboxTable} WHERE message_id = 'K-0' FOR UPDATE`);
      // A batch of 10 takes K-1..K-10 (K-0 is locked), all held behind K-0: the next batch must look past K.
      await relay({ table: outboxTable, pollIntervalMs: 100, batchSize: 10 }).start();
      await got.waitForCount(2, 5_000);
      expect(got.items).toEqual(['J-0', 'nokey']);
      await other.query('ROLLBACK');
      await got.waitForCount(13, 5_000);
      expect(got.items.slice(2)).toEqual(Array.from({ length: 11 }, (_, n) => `K-${n}`));
    } finally {
      other.release();
    }
  });

  it('keeps id order per key when its rows have different content types', async () => {
    const { outboxTable } = await db.tables();
    const box = createOutbox({ table: outboxTable });
    const topic = uniqueName('ctorder');
    const got = collect<string>();
    await bus.subscribe(topic, (m) => got.push(m.id), { group: 'g' });
    const text = defineTopic<string>(topic, undefined, { codec: stringCodec });
    await tx(db.pool, async (c) => {
      await box.add(c, topic, { n: 1 }, { key: 'k', id: 'k1-json' });
      await box.add(c, text, 'two', { key: 'k', id: 'k2-text' });
      await box.add(c, topic, { n: 3 }, { key: 'k', id: 'k3-json' });
    });
    await relay({ table: outboxTable, pollIntervalMs: 100 }).start();
    await got.waitForCount(3, 5_000);
    expect(got.items).toEqual(['k1-json', 'k2-text', 'k3-json']);
  });

  it('a row the bus refuses as not retryable (PermanentError, a refused publish) is marked failed; other topics flow at full pace', async () => {
    const { outboxTable } = await db.tables();
    const box = createOutbox({ table: outboxTable });
    const refusing = await connect({ url: `memory://${uniqueName('refusing')}`, logger: silentLogger });
    try {
      const blocked = uniqueName('blocked');
      const refused = uniqueName('refused');
      const open = uniqueName('open');
      refusing.use({
        publish: (m) => {
          if (m.topic === blocked) throw new PermanentError('never for this topic');
          if (m.topic === refused) throw new PublishError('unroutable', { retryable: false });
        },
      });
      const got = collect<string>();
      await refusing.subscribe(open, (m) => got.push(m.id), { group: 'g' });
      await tx(db.pool, async (c) => {
        await box.add(c, blocked, 1, { id: 'blocked' });
        await box.add(c, refused, 1, { id: 'refused' });
        for (let n = 0; n < 200; n++) await box.add(c, open, n, { id: `open-${n}` });
      });
      // A backoff after every batch (up to maxBackoffMs) would take minutes for 200 rows in batches of 5.
      await relay({
        table: outboxTable,
        bus: refusing,
        pollIntervalMs: 100,
        batchSize: 5,
        maxBackoffMs: 30_000,
      }).start();
      await got.waitForCount(200, 10_000);
      const rows = await db.pool.query(
        `SELECT message_id, error FROM ${outboxTable} WHERE message_id IN ('blocked', 'refused') ORDER BY id`,
      );
      expect(rows.rows.map((r) => [r.message_id, r.error?.split(':')[0]])).toEqual([
        ['blocked', 'PermanentError'],
        ['refused', 'PublishError'],
      ]);
    } finally {
      await refusing.close();
    }
  });

  it('delete mode removes rows in the publishing transaction', async () => {
    const { outboxTable } = await db.tables();
    const box = createOutbox({ table: outboxTable });
    const topic = uniqueName('del');
    const got = collect<string>();
    await bus.subscribe(topic, (m) => got.push(m.id), { group: 'g' });
    await tx(db.pool, async (c) => {
      for (let i = 0; i < 5; i++) await box.add(c, topic, i, { key: 'k' });
    });
    await relay({ table: outboxTable, mode: 'delete', pollIntervalMs: 100 }).start();
    await got.waitForCount(5, 5_000);
    await waitFor(
      async () => (await db.pool.query(`SELECT count(*)::int AS n FROM ${outboxTable}`)).rows[0].n === 0,
      5_000,
      'deleted',
    );
  });

  it('cleans up published rows after the retention period, never pending ones', async () => {
    const { outboxTable } = await db.tables();
    const box = createOutbox({ table: outboxTable });
    const topic = uniqueName('retain');
    const got = collect<string>();
    await bus.subscribe(topic, (m) => got.push(m.id), { group: 'g' });
    const r = relay({ table: outboxTable, retentionMs: 60_000, pollIntervalMs: 100 });
    await r.start();
    await tx(db.pool, (c) => box.add(c, topic, 'old'));
    await got.waitForCount(1, 5_000);
    await waitFor(
      async () =>
        (await db.pool.query(`SELECT count(*)::int AS n FROM ${outboxTable} WHERE published_at IS NOT NULL`)).rows[0]
          .n === 1,
      5_000,
      'marked',
    );
    await db.pool.query(`UPDATE ${outboxTable} SET published_at = now() - interval '2 minutes'`);
    // A pending row written straight to the table (no relay will pick it before cleanup: its topic has no subscriber but that is fine).
    await tx(db.pool, (c) => box.add(c, topic, 'new'));
    await got.waitForCount(2, 5_000);
    await r.cleanup();
    const rows = (await db.pool.query(`SELECT payload FROM ${outboxTable}`)).rows;
    expect(rows.map((x) => Buffer.from(x.payload).toString())).toEqual(['"new"']);
    expect(events.some((e) => e.type === 'cleaned' && e.table === outboxTable && e.deleted === 1)).toBe(true);
  });

  it('reports batches and errors on diagnostics_channel and keeps failed rows pending', async () => {
    const { outboxTable } = await db.tables();
    const box = createOutbox({ table: outboxTable });
    const closedBus = await connect({ url: `memory://${uniqueName('closed')}`, logger: silentLogger });
    await closedBus.close();
    const topic = uniqueName('evt');
    await tx(db.pool, (c) => box.add(c, topic, 1));
    const bad = relay({ table: outboxTable, bus: closedBus, pollIntervalMs: 100, name: 'bad-relay' });
    await bad.start();
    await waitFor(() => events.some((e) => e.type === 'error' && e.relay === 'bad-relay'), 5_000, 'error event');
    await bad.stop();
    const failed = events.find((e) => e.type === 'error' && e.relay === 'bad-relay');
    expect(failed).toMatchObject({ stage: 'batch', table: outboxTable });
    expect(
      (await db.pool.query(`SELECT count(*)::int AS n FROM ${outboxTable} WHERE published_at IS NULL`)).rows[0].n,
    ).toBe(1);

    const got = collect<string>();
    await bus.subscribe(topic, (m) => got.push(m.id), { group: 'g' });
    const good = relay({ table: outboxTable, pollIntervalMs: 100, name: 'good-relay' });
    await good.start();
    await got.waitForCount(1, 5_000);
    await waitFor(
      () => events.some((e) => e.type === 'published' && e.relay === 'good-relay'),
      5_000,
      'published event',
    );
    expect(events.find((e) => e.type === 'published' && e.relay === 'good-relay')).toMatchObject({
      count: 1,
      deferred: 0,
    });
  });

  it('stops gracefully: the batch in flight is committed before stop() resolves', async () => {
    const { outboxTable } = await db.tables();
    const box = createOutbox({ table: outboxTable });
    const topic = uniqueName('stop');
    await bus.subscribe(topic, () => undefined, { group: 'g' });
    let entered!: () => void;
    const inBatch = new Promise<void>((resolve) => {
      entered = resolve;
    });
    const r = relay({
      table: outboxTable,
      pollIntervalMs: 100,
      beforeMark: async () => {
        entered();
        await sleep(300);
      },
    });
    await tx(db.pool, (c) => box.add(c, topic, 1));
    await r.start();
    await inBatch;
    await r.stop();
    expect(r.running).toBe(false);
    expect(
      (await db.pool.query(`SELECT count(*)::int AS n FROM ${outboxTable} WHERE published_at IS NOT NULL`)).rows[0].n,
    ).toBe(1);
    await r.stop();
  });

  it('works from a connection string, with its own pool that stop() ends', async () => {
    const { outboxTable } = await db.tables();
    const box = createOutbox({ table: outboxTable });
    const topic = uniqueName('url');
    const got = collect<string>();
    await bus.subscribe(topic, (m) => got.push(m.id), { group: 'g' });
    const r = createRelay({
      url: brokerUrls.postgres,
      bus,
      table: outboxTable,
      pollIntervalMs: 100,
      name: 'url-relay',
    });
    await r.start();
    const id = await tx(db.pool, (c) => box.add(c, topic, 1));
    await got.waitForCount(1, 3_000);
    expect(got.items).toEqual([id]);
    await r.stop();
    const listening = async () =>
      (
        await db.pool.query(`SELECT count(*)::int AS n FROM pg_stat_activity WHERE query = $1`, [
          `LISTEN "busbar_outbox:${outboxTable}"`,
        ])
      ).rows[0].n;
    await waitFor(async () => (await listening()) === 0, 3_000, 'the LISTEN session to end');
    expect(r.running).toBe(false);
  });

  it('rejects bad options with the field named', () => {
    expect(() => createRelay({ pool: db.pool, bus, batchSize: 0 })).toThrow(/batchSize/);
    expect(() => createRelay({ pool: db.pool, bus, mode: 'move' as 'mark' })).toThrow(/mode/);
    expect(() => createRelay({ bus } as never)).toThrow(/pool or url/);
    expect(() => createRelay({ pool: db.pool, bus, extra: 1 } as never)).toThrow(/unknown option 'extra'/);
  });
});
