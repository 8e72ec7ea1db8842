/**
 * The order flow with a transactional outbox and an exactly-once payment
 * effect:
 *
 * - the order service writes the order row and its `orders.placed` message in
 *   ONE PostgreSQL transaction (`outbox.add`): both commit or neither does;
 * - a relay publishes outbox rows through the bus (any broker), in order per key;
 * - the payment service records the charge and the idempotency key in ONE
 *   transaction (`store.completeIn`), so a re-sent message is never charged twice.
 *
 *   BUSBAR_URL=amqp://guest:guest@127.0.0.1:5672 DATABASE_URL=postgres://... node examples/dist/outbox/main.js
 */
import diagnostics from 'node:diagnostics_channel';
import { channels, connect, defineTopic, type SettledEvent } from '@busbar/core';
import { createOutbox, createRelay, migrate, PostgresIdempotencyStore } from '@busbar/postgres';
import pg from 'pg';
import { z } from 'zod';

const busUrl = process.env.BUSBAR_URL ?? 'memory://';
const databaseUrl = process.env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/test';
const log = (who: string, text: string) => console.log(`[${who.padEnd(8)}] ${text}`);

const OrderPlaced = defineTopic(
  'orders.placed',
  z.object({ runId: z.string(), orderId: z.string(), customer: z.string(), total: z.number().positive() }),
);

// A schema per demo run, so runs against several brokers at once never take each other's rows.
// A service uses one outbox table (default `busbar_outbox`) for all its topics.
const run = `r${Date.now().toString(36)}${Math.floor(Math.random() * 1e4).toString(36)}`;
const schema = `busbar_demo_${run}`;
const tables = { outboxTable: `${schema}.outbox`, idempotencyTable: `${schema}.idempotency` };

const pool = new pg.Pool({ connectionString: databaseUrl, max: 8 });
await pool.query(`CREATE SCHEMA ${schema}`);
await migrate(pool, tables);
await pool.query(`CREATE TABLE ${schema}.orders (id text PRIMARY KEY, customer text, total numeric)`);
await pool.query(`CREATE TABLE ${schema}.payments (order_id text, message_id text, total numeric)`);

const bus = await connect({ url: busUrl, name: 'outbox-demo' });
log(
  'demo',
  `bus: ${bus.transport} (${bus.toJSON().url}), database: ${databaseUrl.replace(/\/\/([^:@/]*):[^@/]*@/, '//$1:***@')}`,
);

async function inTransaction<T>(work: (client: pg.PoolClient) => Promise<T>): Promise<T> {
  const client = await pool.connect();
  try {
    await client.query('BEGIN');
    const result = await work(client);
    await client.query('COMMIT');
    return result;
  } catch (error) {
    await client.query('ROLLBACK');
    throw error;
  } finally {
    client.release();
  }
}

// --- payment service -------------------------------------------------------
const store = new PostgresIdempotencyStore({ pool, table: tables.idempotencyTable });
let duplicates = 0;
const onSettled = (message: unknown) => {
  const event = message as SettledEvent;
  if (event.topic === OrderPlaced.name && event.outcome === 'duplicate') {
    duplicates++;
    log('payments', `message ${event.id} arrived again: already charged, acked without running the handler`);
  }
};
diagnostics.subscribe(channels.settled.name, onSettled);

const payments = await bus.subscribe(
  OrderPlaced,
  async (message, context) => {
    const order = message.payload;
    if (order.runId !== run) return; // left in a durable queue by an earlier demo run
    await inTransaction(async (client) => {
      await client.query(`INSERT INTO ${schema}.payments VALUES ($1, $2, $3)`, [
        order.orderId,
        message.id,
        order.total,
      ]);
      // The dedup record commits with the charge, or rolls back with it.
      await store.completeIn(client, context.idempotencyKey);
    });
    log('payments', `charged ${order.orderId}: ${order.total.toFixed(2)} EUR (message ${message.id})`);
  },
  { group: 'payments', concurrency: 4, idempotency: { store, ttlMs: 24 * 3600_000 } },
);

// --- relay -------------------------------------------------------------------
let crashed = false;
const relay = createRelay({
  pool,
  bus,
  table: tables.outboxTable,
  pollIntervalMs: 500,
  // Demo only: the first batch "crashes" after the broker confirmed it and before
  // the rows are marked, so the relay sends it again (at-least-once).
  beforeMark: (ids) => {
    if (crashed) return;
    crashed = true;
    log('relay', `published ${ids.length} message(s), then crashed before marking them: they will be sent again`);
    throw new Error('simulated relay crash');
  },
});
await relay.start();

// --- order service -----------------------------------------------------------
const outbox = createOutbox({ table: tables.outboxTable });
const orders = [
  { runId: run, orderId: `${run}-1`, customer: 'ada', total: 99.9 },
  { runId: run, orderId: `${run}-2`, customer: 'grace', total: 15 },
  { runId: run, orderId: `${run}-3`, customer: 'ada', total: 42.5 },
];
for (const order of orders) {
  const id = await inTransaction(async (client) => {
    await client.query(`INSERT INTO ${schema}.orders VALUES ($1, $2, $3)`, [
      order.orderId,
      order.customer,
      order.total,
    ]);
    return outbox.add(client, OrderPlaced, order, { key: order.customer });
  });
  log('orders', `order ${order.orderId} and its message ${id} committed together`);
}
try {
  await inTransaction(async (client) => {
    await client.query(`INSERT INTO ${schema}.orders VALUES ($1, 'linus', 12)`, [`${run}-4`]);
    await outbox.add(client, OrderPlaced, { runId: run, orderId: `${run}-4`, customer: 'linus', total: 12 });
    throw new Error('out of stock');
  });
} catch (error) {
  log('orders', `order ${run}-4 failed (${(error as Error).message}): the order and its message rolled back together`);
}

// --- outcome -------------------------------------------------------------------
const deadline = Date.now() + 30_000;
const count = async (sql: string) => Number((await pool.query(sql)).rows[0].n);
let charged = 0;
let pending = -1;
while (Date.now() < deadline) {
  charged = await count(`SELECT count(*) AS n FROM ${schema}.payments`);
  pending = await count(`SELECT count(*) AS n FROM ${tables.outboxTable} WHERE published_at IS NULL`);
  if (charged === orders.length && pending === 0) break;
  await new Promise((resolve) => setTimeout(resolve, 100));
}
// Give the re-sent copy time to arrive (and be skipped) before counting.
const settleUntil = Date.now() + 3_000;
while (duplicates === 0 && Date.now() < settleUntil) await new Promise((resolve) => setTimeout(resolve, 50));
const perOrder = (
  await pool.query(`SELECT order_id, count(*)::int AS n FROM ${schema}.payments GROUP BY order_id ORDER BY order_id`)
).rows;
const ordersSaved = await count(`SELECT count(*) AS n FROM ${schema}.orders`);
const rows = await count(`SELECT count(*) AS n FROM ${tables.outboxTable}`);

log(
  'demo',
  `orders saved: ${ordersSaved}, outbox rows: ${rows} (pending ${pending}), charges: ${charged}, duplicates skipped: ${duplicates}`,
);
for (const row of perOrder) log('demo', `  ${row.order_id} charged ${row.n} time(s)`);
if (duplicates === 0)
  log('demo', 'the re-sent copy never reached the consumer: the broker dropped it by message id (e.g. JetStream)');

await relay.stop();
await payments.close();
await bus.close();
diagnostics.unsubscribe(channels.settled.name, onSettled);
await pool.query(`DROP SCHEMA ${schema} CASCADE`);
await pool.end();

const ok = ordersSaved === 3 && charged === 3 && pending === 0 && perOrder.every((r) => r.n === 1);
log('demo', ok ? 'every committed order was charged exactly once' : 'UNEXPECTED OUTCOME');
process.exit(ok ? 0 : 1);
