import type { Bus } from '@busbar/core';
import { uniqueName, waitFor } from '@busbar/testing';
import { context, propagation, ROOT_CONTEXT, SpanKind, SpanStatusCode, trace } from '@opentelemetry/api';
import { AsyncLocalStorageContextManager } from '@opentelemetry/context-async-hooks';
import { W3CTraceContextPropagator } from '@opentelemetry/core';
import {
  BasicTracerProvider,
  InMemorySpanExporter,
  type ReadableSpan,
  SimpleSpanProcessor,
} from '@opentelemetry/sdk-trace-base';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { instrumentBusbar } from '../src/index.js';

export interface TracingHarness {
  readonly provider: BasicTracerProvider;
  /** Finished spans whose destination is `topic`. */
  spans(topic: string): ReadableSpan[];
}

/** Registers a context manager, the W3C propagator and the instrumentation for the file's tests. */
export function useTracing(options: Parameters<typeof instrumentBusbar>[0] = {}): TracingHarness {
  const exporter = new InMemorySpanExporter();
  const provider = new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(exporter)] });
  let uninstall: () => void = () => undefined;
  beforeAll(() => {
    context.setGlobalContextManager(new AsyncLocalStorageContextManager().enable());
    propagation.setGlobalPropagator(new W3CTraceContextPropagator());
    uninstall = instrumentBusbar({ tracerProvider: provider, metrics: false, ...options });
  });
  afterAll(async () => {
    uninstall();
    context.disable();
    propagation.disable();
    await provider.shutdown();
  });
  return {
    provider,
    spans: (topic) => exporter.getFinishedSpans().filter((s) => s.attributes['messaging.destination.name'] === topic),
  };
}

class PaymentDeclined extends Error {
  override readonly name = 'PaymentDeclined';
}

const fastRetry = (maxAttempts: number) => ({ maxAttempts, initialDelayMs: 20, maxDelayMs: 50, jitter: 0 });

/**
 * The tracing contract on one transport: one trace from publisher to
 * consumer, retries as span events, dead letters as errors.
 */
export function tracingTests(
  system: string,
  harness: TracingHarness,
  connect: () => Promise<Bus>,
  timeoutMs = 15_000,
): void {
  let bus: Bus;
  beforeAll(async () => {
    bus = await connect();
  });
  afterAll(async () => {
    await bus?.close();
  });

  const byKind = (topic: string, kind: SpanKind) => harness.spans(topic).filter((s) => s.kind === kind);

  it(
    'one publish and its consumption make a producer and a consumer span in one trace',
    async () => {
      const topic = uniqueName('otel');
      const group = uniqueName('g');
      const seen: { traceparent: string | undefined; activeSpanId: string | undefined }[] = [];
      const sub = await bus.subscribe<{ n: number }>(
        topic,
        (message) => {
          seen.push({
            traceparent: message.headers.traceparent,
            activeSpanId: trace.getActiveSpan()?.spanContext().spanId,
          });
        },
        { group },
      );
      const id = await bus.publish(topic, { n: 1 }, { headers: { 'correlation-id': 'order-42' } });
      await waitFor(() => byKind(topic, SpanKind.CONSUMER).length === 1, timeoutMs, 'the consumer span');
      await sub.close();

      const [producer] = byKind(topic, SpanKind.PRODUCER);
      const [consumer] = byKind(topic, SpanKind.CONSUMER);
      expect(producer?.name).toBe(`send ${topic}`);
      expect(producer?.attributes).toMatchObject({
        'messaging.system': system,
        'messaging.destination.name': topic,
        'messaging.operation.type': 'send',
        'messaging.message.id': id,
      });
      expect(consumer?.name).toBe(`process ${topic}`);
      expect(consumer?.attributes).toMatchObject({
        'messaging.system': system,
        'messaging.destination.name': topic,
        'messaging.operation.type': 'process',
        'messaging.message.id': id,
        'messaging.consumer.group.name': group,
        'messaging.message.conversation_id': 'order-42',
        'busbar.message.attempt': 1,
        'busbar.outcome': 'acked',
      });
      expect(consumer?.spanContext().traceId).toBe(producer?.spanContext().traceId);
      expect(consumer?.parentSpanContext?.spanId).toBe(producer?.spanContext().spanId);
      expect(consumer?.status.code).toBe(SpanStatusCode.UNSET);
      // Broker-native coordinates, read from the driver's raw record.
      if (system === 'kafka') {
        expect(consumer?.attributes['messaging.destination.partition.id']).toMatch(/^\d+$/);
        expect(consumer?.attributes['messaging.kafka.offset']).toBeTypeOf('number');
      }
      if (system === 'rabbitmq')
        expect(consumer?.attributes['messaging.rabbitmq.destination.routing_key']).toBeTypeOf('string');
      // The trace context crossed the broker in the message headers, and the handler ran inside the consumer span.
      expect(seen[0]?.traceparent).toContain(producer?.spanContext().traceId);
      expect(seen[0]?.activeSpanId).toBe(consumer?.spanContext().spanId);
    },
    timeoutMs * 3,
  );

  it(
    'a batch publish is one producer span with the batch size, parented on the active span',
    async () => {
      const topic = uniqueName('otel');
      const tracer = harness.provider.getTracer('test');
      const root = tracer.startSpan('checkout', {}, ROOT_CONTEXT);
      await context.with(trace.setSpan(ROOT_CONTEXT, root), () =>
        bus.publishBatch(topic, [{ payload: 1 }, { payload: 2 }, { payload: 3 }]),
      );
      root.end();
      const [producer] = byKind(topic, SpanKind.PRODUCER);
      expect(producer?.attributes['messaging.batch.message_count']).toBe(3);
      expect(producer?.attributes['messaging.message.id']).toBeUndefined();
      expect(producer?.parentSpanContext?.spanId).toBe(root.spanContext().spanId);
    },
    timeoutMs * 3,
  );

  it(
    'a retried message shows its retries as span events, every attempt in the same trace',
    async () => {
      const topic = uniqueName('otel');
      const group = uniqueName('g');
      let runs = 0;
      const sub = await bus.subscribe(
        topic,
        () => {
          runs++;
          if (runs === 1) throw new PaymentDeclined('card declined');
        },
        { group, retry: fastRetry(3) },
      );
      await bus.publish(topic, { n: 1 });
      await waitFor(() => byKind(topic, SpanKind.CONSUMER).length === 2, timeoutMs, 'two consumer spans');
      await sub.close();

      const [producer] = byKind(topic, SpanKind.PRODUCER);
      const consumers = byKind(topic, SpanKind.CONSUMER).sort(
        (a, b) => Number(a.attributes['busbar.message.attempt']) - Number(b.attributes['busbar.message.attempt']),
      );
      const [first, second] = consumers;
      expect(first?.attributes['busbar.message.attempt']).toBe(1);
      expect(first?.attributes['busbar.outcome']).toBe('retried');
      expect(first?.status.code).toBe(SpanStatusCode.ERROR);
      expect(first?.attributes['error.type']).toBe('PaymentDeclined');
      const retry = first?.events.find((e) => e.name === 'busbar.retry');
      expect(retry?.attributes).toMatchObject({ 'busbar.retry.next_attempt': 2, 'error.type': 'PaymentDeclined' });
      expect(first?.events.some((e) => e.name === 'exception')).toBe(true);
      expect(second?.attributes['busbar.message.attempt']).toBe(2);
      expect(second?.attributes['busbar.outcome']).toBe('acked');
      expect(second?.status.code).toBe(SpanStatusCode.UNSET);
      for (const span of consumers) {
        expect(span.spanContext().traceId).toBe(producer?.spanContext().traceId);
        expect(span.parentSpanContext?.spanId).toBe(producer?.spanContext().spanId);
      }
    },
    timeoutMs * 3,
  );

  it(
    'a dead-lettered message is marked as an error with a dead-letter event',
    async () => {
      const topic = uniqueName('otel');
      const group = uniqueName('g');
      const sub = await bus.subscribe(
        topic,
        () => {
          throw new PaymentDeclined('card declined');
        },
        { group, retry: fastRetry(2) },
      );
      await bus.publish(topic, { n: 1 });
      await waitFor(
        () => byKind(topic, SpanKind.CONSUMER).some((s) => s.attributes['busbar.outcome'] === 'dead-lettered'),
        timeoutMs,
        'the dead-lettered consumer span',
      );
      await sub.close();

      const consumers = byKind(topic, SpanKind.CONSUMER);
      expect(consumers).toHaveLength(2);
      const last = consumers.find((s) => s.attributes['busbar.outcome'] === 'dead-lettered');
      expect(last?.attributes['busbar.message.attempt']).toBe(2);
      expect(last?.status.code).toBe(SpanStatusCode.ERROR);
      expect(last?.status.message).toBe('card declined');
      expect(last?.attributes['error.type']).toBe('PaymentDeclined');
      const event = last?.events.find((e) => e.name === 'busbar.dead_letter');
      expect(event?.attributes).toMatchObject({
        'busbar.dead_letter.topic': `${topic}.${group}.dlq`,
        'busbar.dead_letter.attempts': 2,
      });
    },
    timeoutMs * 3,
  );
}
