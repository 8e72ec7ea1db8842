/**
 * The order flow, observed: every publish and handler run is traced with
 * OpenTelemetry (one trace from the checkout to each payment attempt, retries
 * and dead letters as span events) and counted in Prometheus metrics served
 * on /metrics, with readiness on /readyz. Runs on any broker:
 * BUSBAR_URL=amqp://guest:guest@127.0.0.1:5672 node examples/dist/observability/main.js
 */
import { connect, defineTopic, type Message, PermanentError } from '@busbar/core';
import { instrumentBusbar } from '@busbar/opentelemetry';
import { registerBusbarMetrics, serveMetrics } from '@busbar/prometheus';
import { context, propagation, ROOT_CONTEXT, trace } from '@opentelemetry/api';
import { AsyncLocalStorageContextManager } from '@opentelemetry/context-async-hooks';
import { W3CTraceContextPropagator } from '@opentelemetry/core';
import {
  BasicTracerProvider,
  InMemorySpanExporter,
  type ReadableSpan,
  SimpleSpanProcessor,
} from '@opentelemetry/sdk-trace-base';

interface Order {
  runId: string;
  orderId: string;
  total: number;
  currency: string;
}
const OrderPlaced = defineTopic<Order>('orders.traced');
const log = (who: string, text: string) => console.log(`[${who.padEnd(8)}] ${text}`);

// --- observability setup: what an application does once at start-up -------
context.setGlobalContextManager(new AsyncLocalStorageContextManager().enable());
propagation.setGlobalPropagator(new W3CTraceContextPropagator());
const spans = new InMemorySpanExporter(); // a real service would use an OTLP exporter here
const tracerProvider = new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(spans)] });
const uninstrument = instrumentBusbar({ tracerProvider });
const metrics = registerBusbarMetrics();

const url = process.env.BUSBAR_URL ?? 'memory://';
const bus = await connect({ url, name: 'observability-demo' });
metrics.watch(bus);
const server = await serveMetrics({ port: Number(process.env.METRICS_PORT ?? 0), host: '127.0.0.1', health: bus });
log('demo', `connected to ${bus.transport} (${bus.toJSON().url}); metrics on ${server.url}/metrics`);

// --- payment service -------------------------------------------------------
const run = Date.now().toString(36);
const charged = new Set<string>();
const failedOnce = new Set<string>();
async function charge(message: Message<Order>): Promise<void> {
  const order = message.payload;
  if (order.runId !== run) return; // left in a durable queue by an earlier run
  if (order.currency !== 'EUR') throw new PermanentError(`currency ${order.currency} is not supported`);
  if (order.orderId.endsWith('-2') && !failedOnce.has(order.orderId)) {
    failedOnce.add(order.orderId);
    throw new Error('card processor timed out');
  }
  // Work done here joins the consumer span's trace: the handler runs inside it.
  trace.getActiveSpan()?.setAttribute('order.total', order.total);
  charged.add(order.orderId);
  log('payments', `charged ${order.orderId} (attempt ${message.attempt})`);
}
const payments = await bus.subscribe(OrderPlaced, charge, {
  group: 'billing',
  retry: { maxAttempts: 3, initialDelayMs: 100, maxDelayMs: 1_000 },
});

// --- order service: one checkout, traced from the first span ----------------
const tracer = tracerProvider.getTracer('order-service');
const checkout = tracer.startSpan('checkout', {}, ROOT_CONTEXT);
await context.with(trace.setSpan(ROOT_CONTEXT, checkout), async () => {
  for (const [n, currency] of [
    [1, 'EUR'],
    [2, 'EUR'],
    [3, 'XTS'],
  ] as const) {
    const order = { runId: run, orderId: `${run}-${n}`, total: 10 * n, currency };
    await bus.publish(OrderPlaced, order, {
      id: order.orderId,
      key: order.orderId,
      headers: { 'correlation-id': run },
    });
    log('orders', `published ${order.orderId} (${currency})`);
  }
});
checkout.end();

const ours = (s: ReadableSpan) => s.spanContext().traceId === checkout.spanContext().traceId;
const deadLettered = () =>
  spans.getFinishedSpans().some((s) => ours(s) && s.attributes['busbar.outcome'] === 'dead-lettered');
const deadline = Date.now() + 30_000;
while (!(charged.size === 2 && deadLettered())) {
  if (Date.now() > deadline) throw new Error('timed out waiting for two charges and one dead letter');
  await new Promise((resolve) => setTimeout(resolve, 20));
}

// --- what an operator sees ---------------------------------------------------
console.log('\ntrace', checkout.spanContext().traceId);
const trail = spans
  .getFinishedSpans()
  .filter(ours)
  .sort((a, b) => a.startTime[0] - b.startTime[0] || a.startTime[1] - b.startTime[1]);
for (const span of trail) {
  const depth = span.parentSpanContext?.spanId === checkout.spanContext().spanId ? 1 : span.parentSpanContext ? 2 : 0;
  const status = span.status.code === 2 ? ` ERROR(${span.attributes['error.type']})` : '';
  const id = span.attributes['messaging.message.id'];
  const attempt = span.attributes['busbar.message.attempt'];
  const events = span.events.map((e) => e.name).join(', ');
  console.log(
    `${'  '.repeat(depth)}${span.name}${id ? ` id=${id}` : ''}${attempt ? ` attempt=${attempt}` : ''}${status}${events ? ` events=[${events}]` : ''}`,
  );
}

const text = await (await fetch(`${server.url}/metrics`)).text();
console.log('\nGET /metrics (busbar lines for orders.traced):');
for (const line of text.split('\n')) {
  if (/^busbar_(messages_processed_total|dead_letters_total|messages_published_total)\{.*orders\.traced/.test(line))
    console.log(`  ${line}`);
}
const ready = await fetch(`${server.url}/readyz`);
console.log(`GET /readyz -> ${ready.status} ${((await ready.json()) as { status: string }).status}`);

await payments.close();
await bus.close();
await server.close();
metrics.unregister();
uninstrument();
await tracerProvider.shutdown();
log('demo', `done: ${charged.size} charged, 1 dead-lettered, ${trail.length} spans in one trace`);
