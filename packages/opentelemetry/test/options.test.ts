import { connect, defineTopic, silentLogger, stringCodec } from '@busbar/core';
import { uniqueName, waitFor } from '@busbar/testing';
import { context, propagation, SpanKind } from '@opentelemetry/api';
import { AsyncLocalStorageContextManager } from '@opentelemetry/context-async-hooks';
import { W3CTraceContextPropagator } from '@opentelemetry/core';
import { type DataPoint, type Histogram, MeterProvider, MetricReader } from '@opentelemetry/sdk-metrics';
import { BasicTracerProvider, InMemorySpanExporter, SimpleSpanProcessor } from '@opentelemetry/sdk-trace-base';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { instrumentBusbar } from '../src/index.js';

class TestReader extends MetricReader {
  protected override async onShutdown(): Promise<void> {}
  protected override async onForceFlush(): Promise<void> {}
}

const exporter = new InMemorySpanExporter();
const tracerProvider = new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(exporter)] });

beforeAll(() => {
  context.setGlobalContextManager(new AsyncLocalStorageContextManager().enable());
  propagation.setGlobalPropagator(new W3CTraceContextPropagator());
});
afterAll(async () => {
  context.disable();
  propagation.disable();
  await tracerProvider.shutdown();
});

const memory = () => connect({ url: `memory://${uniqueName('otel')}`, logger: silentLogger });
const spansOf = (topic: string) =>
  exporter.getFinishedSpans().filter((s) => s.attributes['messaging.destination.name'] === topic);

describe('instrumentBusbar options', () => {
  it('records sent, consumed, process-duration and settled metrics', async () => {
    const reader = new TestReader();
    const meterProvider = new MeterProvider({ readers: [reader] });
    const uninstall = instrumentBusbar({ meterProvider, tracing: false });
    const bus = await memory();
    try {
      const topic = uniqueName('m');
      let runs = 0;
      const done: number[] = [];
      await bus.subscribe(
        topic,
        () => {
          runs++;
          if (runs === 1) throw new TypeError('flaky');
          done.push(runs);
        },
        { group: 'g', retry: { maxAttempts: 3, initialDelayMs: 10, maxDelayMs: 10, jitter: 0 } },
      );
      await bus.publishBatch(topic, [{ payload: 1 }, { payload: 2 }]);
      await waitFor(() => done.length === 2, 5_000, 'both messages processed');
      await waitFor(
        async () => {
          const { resourceMetrics } = await reader.collect();
          const settled = resourceMetrics.scopeMetrics[0]?.metrics.find(
            (m) => m.descriptor.name === 'busbar.messages.settled',
          );
          return (settled?.dataPoints.reduce((n, p) => n + Number(p.value), 0) ?? 0) === 3;
        },
        5_000,
        'three settlements',
      );
      const { resourceMetrics } = await reader.collect();
      const metrics = new Map(
        resourceMetrics.scopeMetrics.flatMap((s) => s.metrics).map((m) => [m.descriptor.name, m]),
      );
      const sum = (name: string, filter: (a: Record<string, unknown>) => boolean = () => true) =>
        (metrics.get(name)?.dataPoints as DataPoint<number>[] | undefined)
          ?.filter((p) => filter(p.attributes))
          .reduce((n, p) => n + p.value, 0);
      expect(sum('messaging.client.sent.messages')).toBe(2);
      expect(sum('messaging.client.consumed.messages')).toBe(3);
      expect(sum('busbar.messages.settled', (a) => a['busbar.outcome'] === 'retried')).toBe(1);
      expect(sum('busbar.messages.settled', (a) => a['busbar.outcome'] === 'acked')).toBe(2);
      const durations = metrics.get('messaging.process.duration')?.dataPoints as DataPoint<Histogram>[];
      expect(durations.reduce((n, p) => n + p.value.count, 0)).toBe(3);
      expect(durations.find((p) => p.attributes['error.type'] === 'TypeError')?.value.count).toBe(1);
      expect(metrics.get('messaging.client.operation.duration')?.descriptor.unit).toBe('s');
    } finally {
      uninstall();
      await bus.close();
      await meterProvider.shutdown();
    }
  });

  it("consumerParent 'link' starts a new trace linked to the producer", async () => {
    const uninstall = instrumentBusbar({ tracerProvider, metrics: false, consumerParent: 'link' });
    const bus = await memory();
    try {
      const topic = uniqueName('l');
      await bus.subscribe(topic, () => undefined, { group: 'g' });
      await bus.publish(topic, 'x');
      await waitFor(() => spansOf(topic).some((s) => s.kind === SpanKind.CONSUMER), 5_000, 'consumer span');
      const producer = spansOf(topic).find((s) => s.kind === SpanKind.PRODUCER);
      const consumer = spansOf(topic).find((s) => s.kind === SpanKind.CONSUMER);
      expect(consumer?.spanContext().traceId).not.toBe(producer?.spanContext().traceId);
      expect(consumer?.parentSpanContext).toBeUndefined();
      expect(consumer?.links[0]?.context.spanId).toBe(producer?.spanContext().spanId);
    } finally {
      uninstall();
      await bus.close();
    }
  });

  it('an undecodable message still shows up as an error span', async () => {
    const uninstall = instrumentBusbar({ tracerProvider, metrics: false });
    const bus = await memory();
    try {
      const topic = uniqueName('u');
      const handled: unknown[] = [];
      // Published as JSON that is not: decoding fails before any handler runs.
      await bus.subscribe(topic, (m) => void handled.push(m.payload), { group: 'g' });
      const lying = { ...stringCodec, contentType: 'application/json' };
      await bus.publish(defineTopic<string>(topic, undefined, { codec: lying }), 'not json{');
      await waitFor(() => spansOf(topic).some((s) => s.kind === SpanKind.CONSUMER), 5_000, 'consumer span');
      const consumer = spansOf(topic).find((s) => s.kind === SpanKind.CONSUMER);
      expect(handled).toHaveLength(0);
      expect(consumer?.attributes['busbar.outcome']).toBe('dead-lettered');
      expect(consumer?.status.code).toBe(2);
    } finally {
      uninstall();
      await bus.close();
    }
  });

  it('a handler timeout marks the span from the settlement, before the handler returns', async () => {
    const uninstall = instrumentBusbar({ tracerProvider, metrics: false });
    const bus = await memory();
    try {
      const topic = uniqueName('slow');
      let runs = 0;
      await bus.subscribe(
        topic,
        async () => {
          runs++;
          if (runs === 1) await new Promise((resolve) => setTimeout(resolve, 1_000));
        },
        { group: 'g', handlerTimeoutMs: 50, retry: { maxAttempts: 3, initialDelayMs: 10, maxDelayMs: 10, jitter: 0 } },
      );
      await bus.publish(topic, 'x');
      await waitFor(
        () => spansOf(topic).filter((s) => s.kind === SpanKind.CONSUMER).length === 2,
        5_000,
        'two attempts',
      );
      const first = spansOf(topic).find((s) => s.attributes['busbar.message.attempt'] === 1);
      expect(first?.attributes['busbar.outcome']).toBe('retried');
      expect(first?.attributes['error.type']).toBe('HandlerTimeoutError');
      expect(first?.status.code).toBe(2);
      expect(first?.events.map((e) => e.name)).toContain('busbar.retry');
    } finally {
      uninstall();
      await bus.close();
    }
  });

  it('after uninstall nothing is traced and no trace context is injected', async () => {
    const uninstall = instrumentBusbar({ tracerProvider, metrics: false });
    uninstall();
    uninstall();
    const bus = await memory();
    try {
      const topic = uniqueName('off');
      const headers: Record<string, string>[] = [];
      await bus.subscribe(topic, (m) => void headers.push({ ...m.headers }), { group: 'g' });
      await bus.publish(topic, 'x');
      await waitFor(() => headers.length === 1, 5_000, 'delivery');
      expect(headers[0]?.traceparent).toBeUndefined();
      expect(spansOf(topic)).toHaveLength(0);
    } finally {
      await bus.close();
    }
  });
});
