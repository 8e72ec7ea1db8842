/**
 * The order flow: an order service publishes orders; a payment service charges
 * them with retry, dead-lettering and an idempotent consumer; support reads the
 * dead letters. Runs on any broker: BUSBAR_URL=amqp://... npm run demo
 */
import { connect, MemoryIdempotencyStore, type Message, PermanentError, ValidationError } from '@busbar/core';
import { type Order, OrderCreated } from './topics.js';
import { onSettled, waitUntil } from './util.js';

const url = process.env.BUSBAR_URL ?? 'memory://';
const log = (who: string, text: string) => console.log(`[${who.padEnd(8)}] ${text}`);

const bus = await connect({ url, name: 'order-demo' });
log('demo', `connected to ${bus.transport} (${bus.toJSON().url})`);

// --- payment service -------------------------------------------------------
const charged = new Map<string, number>();
const flakyOnce = new Set<string>();
const run = Date.now().toString(36);

async function charge(message: Message<Order>): Promise<void> {
  const order = message.payload;
  if (order.runId !== run) return; // an order from an earlier demo run still in a durable queue
  if (order.currency !== 'EUR') throw new PermanentError(`currency ${order.currency} is not supported`);
  if (order.orderId.endsWith('-3') && !flakyOnce.has(order.orderId)) {
    flakyOnce.add(order.orderId);
    throw new Error('card processor timed out');
  }
  charged.set(order.orderId, (charged.get(order.orderId) ?? 0) + 1);
  log('payments', `charged ${order.orderId}: ${order.total.toFixed(2)} ${order.currency} (attempt ${message.attempt})`);
}

const retried: string[] = [];
const deadLettered: string[] = [];
const stopEvents = onSettled((event) => {
  if (event.topic !== OrderCreated.name) return;
  if (event.outcome === 'retried') {
    retried.push(event.id);
    log('payments', `attempt ${event.attempt} failed (${event.error?.message}); retry in ${event.delayMs} ms`);
  }
  if (event.outcome === 'duplicate') log('payments', `duplicate ${event.id} skipped by the idempotency store`);
  if (event.outcome === 'dead-lettered') {
    deadLettered.push(event.id);
    log('payments', `gave up on ${event.id}: ${event.error?.name} -> ${event.deadLetterTopic}`);
  }
});

const payments = await bus.subscribe(OrderCreated, charge, {
  group: 'payments',
  concurrency: 4,
  retry: { maxAttempts: 3, initialDelayMs: 200, maxDelayMs: 2_000 },
  deadLetter: true,
  idempotency: { store: new MemoryIdempotencyStore(), ttlMs: 24 * 3600_000 },
});

// --- order service ---------------------------------------------------------
const orders: Order[] = [
  { runId: run, orderId: `${run}-1`, total: 99.9, currency: 'EUR' },
  { runId: run, orderId: `${run}-2`, total: 15, currency: 'EUR' },
  { runId: run, orderId: `${run}-3`, total: 42.5, currency: 'EUR' },
  { runId: run, orderId: `${run}-4`, total: 7, currency: 'XTS' },
];
for (const order of orders) {
  // The order id doubles as the message id: publishing it again is deduplicated downstream.
  await bus.publish(OrderCreated, order, { id: order.orderId, key: order.orderId, headers: { tenant: 'acme' } });
  log('orders', `published ${order.orderId} (${order.total} ${order.currency})`);
}
await bus.publish(OrderCreated, orders[1] as Order, { id: `${run}-2`, key: `${run}-2` });
log('orders', `published ${run}-2 again (a retried request): must not be charged twice`);

try {
  await bus.publish(OrderCreated, { runId: run, orderId: `${run}-5`, total: -1, currency: 'EUR' });
} catch (error) {
  if (!(error instanceof ValidationError)) throw error;
  log('orders', `refused before sending: ${error.message}`);
}

// --- wait for the outcome, then read the dead letter -----------------------
await waitUntil(() => charged.size === 3 && deadLettered.length === 1, 30_000, 'three charges and one dead letter');

let supportSaw = false;
const support = await bus.subscribeDeadLetters(OrderCreated, 'payments', async (letter) => {
  const info = letter.deadLetter;
  if (!info || letter.id !== `${run}-4`) return;
  log(
    'support',
    `dead letter ${letter.id}: ${info.errorName} "${info.errorMessage}" after ${info.attempts} attempt(s), tenant=${letter.headers.tenant}`,
  );
  supportSaw = true;
});
await waitUntil(() => supportSaw, 30_000, 'the dead letter to be read');

await support.close();
await payments.close();
stopEvents();
await bus.close();

const twice = [...charged.values()].some((n) => n > 1);
log(
  'demo',
  `done: ${charged.size} charged, ${deadLettered.length} dead-lettered, ${retried.length} retried, charged twice: ${twice ? 'YES (bug)' : 'no'}`,
);
process.exitCode = twice ? 1 : 0;
