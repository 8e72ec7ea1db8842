import { type Bus, BusbarError, connect, silentLogger } from '@busbar/core';
import { uniqueName, waitFor, watchUncaught } from '@busbar/testing';
import {
  context,
  type MeterProvider,
  propagation,
  SpanKind,
  SpanStatusCode,
  type TextMapPropagator,
  type TracerProvider,
} from '@opentelemetry/api';
import { AsyncLocalStorageContextManager } from '@opentelemetry/context-async-hooks';
import { W3CTraceContextPropagator } from '@opentelemetry/core';
import { MetricReader, MeterProvider as SdkMeterProvider } from '@opentelemetry/sdk-metrics';
import { BasicTracerProvider, InMemorySpanExporter, SimpleSpanProcessor } from '@opentelemetry/sdk-trace-base';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { type InstrumentationOptions, instrumentBusbar } from '../src/index.js';

class TestReader extends MetricReader {
  protected override async onShutdown(): Promise<void> {}
  protected override async onForceFlush(): Promise<void> {}
}

/**
 * Node turns an exception thrown by a diagnostics-channel subscriber into an
 * uncaught exception: in production, a crash. These tests collect them; there must be none.
 */
let uncaught: ReturnType<typeof watchUncaught>;
beforeEach(() => {
  uncaught = watchUncaught();
  context.setGlobalContextManager(new AsyncLocalStorageContextManager().enable());
  propagation.setGlobalPropagator(new W3CTraceContextPropagator());
});
afterEach(() => {
  uncaught.stop();
  context.disable();
  propagation.disable();
});

const memory = () => connect({ url: `memory://${uniqueName('hostile')}`, logger: silentLogger });

/** A publish and its consumption on a fresh topic: the bus still works. */
async function roundTrip(bus: Bus): Promise<void> {
  const topic = uniqueName('after');
  const got: number[] = [];
  const sub = await bus.subscribe<number>(topic, (m) => void got.push(m.payload), { group: 'g' });
  try {
    await bus.publish(topic, 1);
    await bus.publishBatch(topic, [{ payload: 2 }, { payload: 3 }]);
    await waitFor(() => got.length === 3, 5_000, 'the round trip');
    expect(got.sort()).toEqual([1, 2, 3]);
  } finally {
    await sub.close();
  }
}

async function withInstrumentation(options: InstrumentationOptions, run: (bus: Bus) => Promise<void>): Promise<void> {
  const uninstall = instrumentBusbar(options);
  const bus = await memory();
  try {
    await run(bus);
    await roundTrip(bus);
    // Settlement events and sweeps run after the handler: give them a moment to misbehave.
    await new Promise((resolve) => setTimeout(resolve, 100));
  } finally {
    uninstall();
    await bus.close();
  }
  expect(uncaught.errors.map(String)).toEqual([]);
}

const unreadable: [string, () => unknown][] = [
  ['a null-prototype object', () => Object.create(null)],
  [
    'an object whose toString throws',
    () => ({
      toString: () => {
        throw new Error('no');
      },
    }),
  ],
  [
    'a Proxy that throws on every trap',
    () =>
      new Proxy(
        {},
        {
          get: () => {
            throw new Error('trap');
          },
          getPrototypeOf: () => {
            throw new Error('trap');
          },
          has: () => {
            throw new Error('trap');
          },
          ownKeys: () => {
            throw new Error('trap');
          },
        },
      ),
  ],
  [
    'an Error whose message and stack getters throw',
    () => {
      const error = new Error('x');
      Object.defineProperty(error, 'message', {
        get: () => {
          throw new Error('getter');
        },
      });
      Object.defineProperty(error, 'stack', {
        get: () => {
          throw new Error('getter');
        },
      });
      return error;
    },
  ],
];

describe('values a handler throws that cannot be read', () => {
  it('are recorded as failed spans and metrics, without an uncaught exception', async () => {
    const exporter = new InMemorySpanExporter();
    const tracerProvider = new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(exporter)] });
    const meterProvider = new SdkMeterProvider({ readers: [new TestReader()] });
    await withInstrumentation({ tracerProvider, meterProvider }, async (bus) => {
      for (const [label, thrown] of unreadable) {
        const topic = uniqueName('throws');
        const settled = () =>
          exporter
            .getFinishedSpans()
            .filter((s) => s.kind === SpanKind.CONSUMER && s.attributes['messaging.destination.name'] === topic);
        const sub = await bus.subscribe(
          topic,
          () => {
            throw thrown();
          },
          { group: 'g', retry: false },
        );
        await bus.publish(topic, label);
        await waitFor(() => settled().length === 1, 5_000, `the span of ${label}`);
        await sub.close();
        const [span] = settled();
        expect(span?.status.code, label).toBe(SpanStatusCode.ERROR);
        expect(span?.attributes['busbar.outcome'], label).toBe('dead-lettered');
        expect(span?.attributes['error.type'], label).toBeTypeOf('string');
      }
    });
    await tracerProvider.shutdown();
    await meterProvider.shutdown();
  });
});

const boom = (): never => {
  throw new Error('broken telemetry backend');
};

describe("a user's tracer, meter or propagator that throws", () => {
  it('a tracer: publish and consume go on, without an uncaught exception', async () => {
    const tracerProvider = { getTracer: () => ({ startSpan: boom, startActiveSpan: boom }) } as TracerProvider;
    await withInstrumentation({ tracerProvider, metrics: false }, async () => undefined);
  });

  it('spans whose methods throw: publish, consume, retry and dead-letter go on', async () => {
    const span = {
      spanContext: () => ({ traceId: '0'.repeat(31).concat('1'), spanId: '0'.repeat(15).concat('1'), traceFlags: 1 }),
      setAttribute: boom,
      setAttributes: boom,
      addEvent: boom,
      addLink: boom,
      addLinks: boom,
      setStatus: boom,
      updateName: boom,
      end: boom,
      isRecording: () => true,
      recordException: boom,
    };
    const tracerProvider = { getTracer: () => ({ startSpan: () => span, startActiveSpan: boom }) } as TracerProvider;
    await withInstrumentation({ tracerProvider, metrics: false, settleTimeoutMs: 0 }, async (bus) => {
      const topic = uniqueName('spans');
      let runs = 0;
      await bus.subscribe(
        topic,
        () => {
          runs++;
          throw new Error('fails');
        },
        { group: 'g', retry: { maxAttempts: 2, initialDelayMs: 10, maxDelayMs: 10, jitter: 0 } },
      );
      await bus.publish(topic, 1);
      await waitFor(() => runs === 2, 5_000, 'both attempts');
      // The sweeper runs (settleTimeoutMs 0) over spans whose end() throws.
      await new Promise((resolve) => setTimeout(resolve, 250));
    });
  });

  it('a meter: publish and consume go on, without an uncaught exception', async () => {
    const meterProvider = {
      getMeter: () => ({ createCounter: () => ({ add: boom }), createHistogram: () => ({ record: boom }) }),
    } as unknown as MeterProvider;
    await withInstrumentation({ meterProvider, tracing: false }, async () => undefined);
  });

  it('a propagator: spans are still recorded, publish and consume go on', async () => {
    const exporter = new InMemorySpanExporter();
    const tracerProvider = new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(exporter)] });
    const propagator: TextMapPropagator = { inject: boom, extract: boom, fields: () => [] };
    propagation.disable();
    propagation.setGlobalPropagator(propagator);
    await withInstrumentation({ tracerProvider, metrics: false }, async (bus) => {
      const topic = uniqueName('prop');
      const got: unknown[] = [];
      await bus.subscribe(topic, (m) => void got.push(m.payload), { group: 'g' });
      await bus.publish(topic, 'x');
      await waitFor(() => got.length === 1, 5_000, 'the delivery');
      const spans = () =>
        exporter.getFinishedSpans().filter((s) => s.attributes['messaging.destination.name'] === topic);
      await waitFor(() => spans().length === 2, 5_000, 'producer and consumer spans');
      expect(
        spans()
          .map((s) => s.kind)
          .sort(),
      ).toEqual([SpanKind.PRODUCER, SpanKind.CONSUMER].sort());
    });
    await tracerProvider.shutdown();
  });
});

describe('options', () => {
  it('a settleTimeoutMs that is not a number of milliseconds is a ConfigError, not a 1 ms sweeper', () => {
    for (const settleTimeoutMs of [Number.NaN, -1, '100' as unknown as number]) {
      let error: unknown;
      try {
        instrumentBusbar({ settleTimeoutMs, metrics: false })();
      } catch (e) {
        error = e;
      }
      expect(BusbarError.is(error, 'BUSBAR_CONFIG'), String(settleTimeoutMs)).toBe(true);
    }
    expect(() => instrumentBusbar({ consumerParent: 'child' as 'link' })).toThrow(/consumerParent/);
  });
});
