import { BusbarError, defineTopic } from '@busbar/core';
import { brokerAvailable } from '@busbar/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { createOutbox, migrate, outboxMigrationSql } from '../src/index.js';
import { type TestDb, testDb, tx } from './helpers.js';

const ok = await brokerAvailable('postgres');

describe.runIf(ok)('outbox.add', () => {
  let db: TestDb;
  beforeAll(async () => {
    db = await testDb();
  });
  afterAll(async () => {
    await db?.close();
  });

  const Order = defineTopic('orders.created', z.object({ orderId: z.string(), total: z.number() }));

  it('commits the business row and the outbox row together', async () => {
    const { outboxTable } = await db.tables();
    const box = createOutbox({ table: outboxTable });
    await db.pool.query(`CREATE TABLE ${db.schema}.orders (id text PRIMARY KEY)`);
    const id = await tx(db.pool, async (client) => {
      await client.query(`INSERT INTO ${db.schema}.orders VALUES ('o-1')`);
      return box.add(client, Order, { orderId: 'o-1', total: 10 }, { key: 'o-1', headers: { tenant: 'acme' } });
    });
    const { rows } = await db.pool.query(`SELECT * FROM ${outboxTable}`);
    expect(rows).toHaveLength(1);
    expect(rows[0]).toMatchObject({
      message_id: id,
      topic: 'orders.created',
      key: 'o-1',
      headers: { tenant: 'acme' },
      published_at: null,
    });
    expect(JSON.parse(Buffer.from(rows[0].payload).toString())).toEqual({ orderId: 'o-1', total: 10 });
    expect(rows[0].content_type).toBe('application/json');
    expect(id).toMatch(/^[0-9a-f-]{36}$/);
  });

  it('rolls back the business row and the outbox row together', async () => {
    const { outboxTable } = await db.tables();
    const box = createOutbox({ table: outboxTable });
    await db.pool.query(`CREATE TABLE ${db.schema}.orders2 (id text PRIMARY KEY)`);
    await expect(
      tx(db.pool, async (client) => {
        await client.query(`INSERT INTO ${db.schema}.orders2 VALUES ('o-2')`);
        await box.add(client, Order, { orderId: 'o-2', total: 5 });
        throw new Error('payment declined');
      }),
    ).rejects.toThrow('payment declined');
    expect((await db.pool.query(`SELECT count(*)::int AS n FROM ${outboxTable}`)).rows[0].n).toBe(0);
    expect((await db.pool.query(`SELECT count(*)::int AS n FROM ${db.schema}.orders2`)).rows[0].n).toBe(0);
  });

  it('notifies listeners at commit, not before and not on rollback', async () => {
    const { outboxTable } = await db.tables();
    const box = createOutbox({ table: outboxTable });
    const listener = await db.pool.connect();
    const seen: string[] = [];
    listener.on('notification', (m) => seen.push(m.channel));
    await listener.query(`LISTEN "busbar_outbox:${outboxTable}"`);
    try {
      const client = await db.pool.connect();
      await client.query('BEGIN');
      await box.add(client, 'a.b', { n: 1 });
      await new Promise((r) => setTimeout(r, 100));
      expect(seen).toHaveLength(0);
      await client.query('ROLLBACK');
      await client.query('BEGIN');
      await box.add(client, 'a.b', { n: 2 });
      await box.add(client, 'a.b', { n: 3 });
      await client.query('COMMIT');
      client.release();
      await new Promise((r) => setTimeout(r, 200));
      // Identical notifications within one transaction are folded into one.
      expect(seen).toEqual([`busbar_outbox:${outboxTable}`]);
    } finally {
      listener.release(true);
    }
  });

  it('fixes a caller-given message id and keeps headers', async () => {
    const { outboxTable } = await db.tables();
    const box = createOutbox({ table: outboxTable });
    const id = await box.add(db.pool, 'a.b', 'x', { id: 'order-7:created' });
    expect(id).toBe('order-7:created');
    const { rows } = await db.pool.query(`SELECT message_id FROM ${outboxTable}`);
    expect(rows.map((r) => r.message_id)).toEqual(['order-7:created']);
  });

  it('rejects bad input before writing anything', async () => {
    const { outboxTable } = await db.tables();
    const box = createOutbox({ table: outboxTable });
    await expect(box.add(db.pool, Order, { orderId: 1, total: 'x' } as never)).rejects.toMatchObject({
      code: 'BUSBAR_VALIDATION',
    });
    await expect(box.add(db.pool, 'orders.*', {})).rejects.toMatchObject({ code: 'BUSBAR_INVALID_TOPIC' });
    await expect(box.add(db.pool, 'bad topic', {})).rejects.toMatchObject({ code: 'BUSBAR_INVALID_TOPIC' });
    await expect(box.add(db.pool, 'a.b', {}, { headers: { 'busbar-attempt': '1' } })).rejects.toMatchObject({
      code: 'BUSBAR_INVALID_HEADER',
    });
    await expect(box.add(db.pool, 'a.b', {}, { headers: { n: 1 as unknown as string } })).rejects.toMatchObject({
      code: 'BUSBAR_INVALID_HEADER',
    });
    await expect(box.add(db.pool, 'a.b', {}, { id: 'has space' })).rejects.toMatchObject({ code: 'BUSBAR_CONFIG' });
    await expect(box.add(db.pool, 'a.b', {}, { priority: 1 } as never)).rejects.toMatchObject({
      code: 'BUSBAR_CONFIG',
    });
    await expect(box.add(db.pool, 'a.b', 10n)).rejects.toMatchObject({ code: 'BUSBAR_SERIALIZATION' });
    expect((await db.pool.query(`SELECT count(*)::int AS n FROM ${outboxTable}`)).rows[0].n).toBe(0);
  });

  it('names the migration to run when the table is missing', async () => {
    const box = createOutbox({ table: db.table('nope') });
    const error = await box.add(db.pool, 'a.b', {}).catch((e: unknown) => e);
    expect(BusbarError.is(error, 'BUSBAR_CONFIG')).toBe(true);
    expect((error as Error).message).toContain(`migrate(client, { outboxTable: '${db.table('nope')}' })`);
    expect((error as Error).message).toContain('does not exist');
  });

  it('rejects invalid table names (no SQL injection through options)', () => {
    expect(() => createOutbox({ table: 'x; DROP TABLE y' })).toThrow(/Invalid table name/);
    expect(() => outboxMigrationSql('a.b.c')).toThrow(/Invalid table name/);
  });

  it('migrates idempotently, also concurrently', async () => {
    const names = { outboxTable: db.table('mig_o'), idempotencyTable: db.table('mig_i') };
    await Promise.all([migrate(db.pool, names), migrate(db.pool, names), migrate(db.pool, names)]);
    await migrate(db.pool, names);
    const { rows } = await db.pool.query(
      `SELECT count(*)::int AS n FROM information_schema.tables WHERE table_schema = $1 AND table_name IN ('mig_o', 'mig_i')`,
      [db.schema],
    );
    expect(rows[0].n).toBe(2);
  });
});
