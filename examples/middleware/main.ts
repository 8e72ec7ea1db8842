/**
 * Middleware as services write it first: a tenant context every function inside the handler can read
 * (AsyncLocalStorage), one structured log line per outcome, an auth check that dead-letters a message at once,
 * and a publish middleware that stamps every outgoing message. Runs on any broker:
 * BUSBAR_URL=nats://127.0.0.1:4222 node examples/dist/middleware/main.js
 */
import { AsyncLocalStorage } from 'node:async_hooks';
import { randomUUID } from 'node:crypto';
import { type ConsumeMiddleware, connect, defineTopic, PermanentError } from '@busbar/core';
import { z } from 'zod';

const Invoice = defineTopic(
  'invoices.requested',
  z.object({ runId: z.string(), invoiceId: z.string(), amount: z.number() }),
);
const runId = randomUUID();
const tenant = new AsyncLocalStorage<{ tenant: string; correlationId: string }>();
const outcomes: string[] = [];

// Anywhere inside a handler, without passing it around.
const currentTenant = () => tenant.getStore()?.tenant ?? 'unknown';

// 1. Context: the tenant and correlation id of the message, for everything the handler calls.
const withContext: ConsumeMiddleware = (message, _context, next) =>
  tenant.run(
    { tenant: message.headers.tenant ?? 'unknown', correlationId: message.headers['correlation-id'] ?? message.id },
    next,
  );

// 2. One structured line per outcome (a real service would hand this object to pino).
const logOutcome: ConsumeMiddleware = async (message, _context, next) => {
  if (message.deadLetter) return next(); // bus middleware wraps dead-letter readers too: not counted here
  const started = performance.now();
  try {
    await next();
    outcomes.push('ok');
    console.log(
      JSON.stringify({
        msg: 'handled',
        id: message.id,
        attempt: message.attempt,
        ...tenant.getStore(),
        ms: Math.round(performance.now() - started),
      }),
    );
  } catch (error) {
    outcomes.push((error as Error).name);
    console.log(
      JSON.stringify({
        msg: 'failed',
        id: message.id,
        attempt: message.attempt,
        error: (error as Error).name,
        ...tenant.getStore(),
      }),
    );
    throw error; // still a failure: retried or dead-lettered as usual
  }
};

// 3. Auth: a message from an unknown tenant will never pass, so it is dead-lettered at once.
const allowed = new Set(['acme', 'globex']);
const requireTenant: ConsumeMiddleware = (message, _context, next) => {
  if (!allowed.has(message.headers.tenant ?? ''))
    throw new PermanentError(`tenant '${message.headers.tenant}' is not allowed`);
  return next();
};

// The demo's group lives on in the broker between runs: a message left by an earlier run (one that stopped
// before its queue drained) is acknowledged and skipped, outside everything else.
const thisRun: ConsumeMiddleware = (message, _context, next) =>
  (message.payload as { runId?: unknown } | null)?.runId === runId ? next() : undefined;

const bus = await connect({ url: process.env.BUSBAR_URL ?? 'memory://', name: 'middleware-demo' });
bus.use(thisRun).use(withContext).use(logOutcome);
// Publish side: every outgoing message carries a correlation id.
bus.use({
  publish: (message) => {
    message.headers['correlation-id'] ??= randomUUID();
  },
});

const billed: string[] = [];
const group = 'billing';
await bus.subscribe(
  Invoice,
  async (message) => {
    await new Promise((resolve) => setTimeout(resolve, 5));
    billed.push(`${message.payload.invoiceId}@${currentTenant()}`);
  },
  { group, middleware: [requireTenant] },
);
const dead: string[] = [];
await bus.subscribeDeadLetters(Invoice, group, (letter) => void dead.push(letter.deadLetter?.errorMessage ?? ''));
await new Promise((resolve) => setTimeout(resolve, Number(process.env.BUSBAR_SETTLE_MS ?? 500)));

await bus.publish(Invoice, { runId, invoiceId: 'inv-1', amount: 10 }, { headers: { tenant: 'acme' } });
await bus.publish(Invoice, { runId, invoiceId: 'inv-2', amount: 20 }, { headers: { tenant: 'globex' } });
await bus.publish(Invoice, { runId, invoiceId: 'inv-3', amount: 30 }, { headers: { tenant: 'mallory' } });

const deadline = Date.now() + 60_000;
while ((billed.length < 2 || dead.length < 1) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
await bus.close();
console.log(`billed: ${billed.sort().join(', ')}`);
console.log(`dead-lettered: ${dead.join(', ')}`);
console.log(`done: ${billed.length} billed, ${dead.length} refused, outcomes ${outcomes.sort().join(' ')}`);
