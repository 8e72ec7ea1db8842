import { type Bus, connect, type Message, silentLogger } from '@busbar/core';
import { uniqueName, waitFor, watchUncaught } from '@busbar/testing';
import { context, DiagLogLevel, diag, propagation, type TextMapPropagator } from '@opentelemetry/api';
import { AsyncLocalStorageContextManager } from '@opentelemetry/context-async-hooks';
import { W3CTraceContextPropagator } from '@opentelemetry/core';
import { BasicTracerProvider, InMemorySpanExporter, SimpleSpanProcessor } from '@opentelemetry/sdk-trace-base';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { instrumentBusbar } from '../src/index.js';

/**
 * A propagator writes into each outgoing message's headers after core checked the user's: whatever it writes
 * that core would have refused must not reach the broker, nor replace a header the user or busbar set.
 */
const w3c = new W3CTraceContextPropagator();

function propagatorWriting(extra: Readonly<Record<string, unknown>>): TextMapPropagator {
  return {
    inject(ctx, carrier, setter) {
      w3c.inject(ctx, carrier, setter);
      // Written straight into the carrier, as a buggy propagator may: the setter only takes strings.
      for (const [name, value] of Object.entries(extra)) (carrier as Record<string, unknown>)[name] = value;
    },
    extract: (ctx, carrier, getter) => w3c.extract(ctx, carrier, getter),
    // A buggy propagator writes more than the fields it declares.
    fields: () => w3c.fields(),
  };
}

let uncaught: ReturnType<typeof watchUncaught>;
let warnings: string[] = [];

beforeEach(() => {
  uncaught = watchUncaught();
  warnings = [];
  context.setGlobalContextManager(new AsyncLocalStorageContextManager().enable());
  const record = (message: string) => void warnings.push(message);
  const ignore = () => undefined;
  diag.setLogger(
    { error: ignore, warn: record, info: ignore, debug: ignore, verbose: ignore },
    { logLevel: DiagLogLevel.WARN, suppressOverrideMessage: true },
  );
});
afterEach(() => {
  uncaught.stop();
  context.disable();
  propagation.disable();
  diag.disable();
});

async function withPropagator(
  extra: Readonly<Record<string, unknown>>,
  run: (bus: Bus, receive: (topic: string) => Promise<Message<unknown>[]>) => Promise<void>,
): Promise<void> {
  propagation.setGlobalPropagator(propagatorWriting(extra));
  const exporter = new InMemorySpanExporter();
  const tracerProvider = new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(exporter)] });
  const uninstall = instrumentBusbar({ tracerProvider, metrics: false });
  const bus = await connect({ url: `memory://${uniqueName('prop')}`, logger: silentLogger });
  const receive = async (topic: string): Promise<Message<unknown>[]> => {
    const got: Message<unknown>[] = [];
    await bus.subscribe(topic, (m) => void got.push(m), { group: 'g' });
    return got;
  };
  try {
    await run(bus, receive);
  } finally {
    uninstall();
    await bus.close();
    await tracerProvider.shutdown();
  }
  expect(uncaught.errors.map(String)).toEqual([]);
}

const TRACEPARENT = /^00-[0-9a-f]{32}-[0-9a-f]{16}-0[01]$/;

describe('headers a propagator injects', () => {
  it('are kept only where core would accept them as user headers; the rest dropped with one warning', async () => {
    const extra = {
      'x-ok': 'fine',
      'x-number': 5,
      'x-object': { a: 1 },
      'bad\nname': 'v',
      'bad name': 'v',
      'x-control': 'a\u0000b',
      'x-lone': '\ud800',
      'x-huge': 'h'.repeat(100_000),
      // Each fits alone; together they pass the 40 KiB every broker carries: the second is dropped.
      'x-big': 'b'.repeat(30_000),
      'x-big-2': 'b'.repeat(30_000),
    };
    await withPropagator(extra, async (bus, receive) => {
      const topic = uniqueName('inject');
      const got = await receive(topic);
      await bus.publish(topic, 1, { headers: { tenant: 'acme' } });
      await bus.publishBatch(topic, [{ payload: 2 }, { payload: 3 }]);
      await waitFor(() => got.length === 3, 5_000, 'every message');
      for (const m of got) {
        const { traceparent, ...rest } = m.headers;
        expect(traceparent).toMatch(TRACEPARENT);
        expect(Object.keys(rest).sort()).toEqual(m.payload === 1 ? ['tenant', 'x-big', 'x-ok'] : ['x-big', 'x-ok']);
        expect(rest['x-ok']).toBe('fine');
      }
      // One warning for the first publish; the same headers dropped again are not news.
      expect(warnings).toHaveLength(1);
      for (const name of [
        'x-number',
        'x-object',
        'bad\\nname',
        'bad name',
        'x-control',
        'x-lone',
        'x-huge',
        'x-big-2',
      ]) {
        expect(warnings[0]).toContain(name);
      }
      expect(warnings[0]?.length).toBeLessThan(2_000);
    });
  });

  it("replace a trace context the user forwarded from a received message: the send span is the consumer's parent", async () => {
    await withPropagator({}, async (bus, receive) => {
      const topic = uniqueName('forwarded');
      const got = await receive(topic);
      const forwarded = '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01';
      await bus.publish(topic, 1, { headers: { traceparent: forwarded, tenant: 'acme' } });
      await waitFor(() => got.length === 1, 5_000, 'the message');
      expect(got[0]?.headers.traceparent).toMatch(TRACEPARENT);
      expect(got[0]?.headers.traceparent).not.toBe(forwarded);
      expect(got[0]?.headers.tenant).toBe('acme');
      expect(warnings).toEqual([]);
    });
  });

  it("never replace the user's headers or busbar's own", async () => {
    const extra = {
      tenant: 'spoofed',
      'busbar-deliver-at': String(Date.now() + 3_600_000),
      'busbar-id': 'hijacked',
      'Busbar-Key': 'hijacked',
    };
    // An own `__proto__` (a literal one would set the prototype instead).
    Object.defineProperty(extra, '__proto__', { value: 'polluted', enumerable: true });
    await withPropagator(extra, async (bus, receive) => {
      const topic = uniqueName('reserved');
      const got = await receive(topic);
      const id = await bus.publish(topic, 1, { headers: { tenant: 'acme' }, key: 'k' });
      // Delivered at once: an injected due time would hold it for an hour.
      await waitFor(() => got.length === 1, 5_000, 'the message');
      expect(got[0]?.id).toBe(id);
      expect(got[0]?.key).toBe('k');
      expect(got[0]?.headers.tenant).toBe('acme');
      expect(Object.keys(got[0]?.headers ?? {}).sort()).toEqual(['tenant', 'traceparent']);
      expect(warnings).toHaveLength(1);

      // The bus keeps working, and a publish with nothing to drop warns no more.
      propagation.disable();
      propagation.setGlobalPropagator(w3c);
      await bus.publish(topic, 2);
      await waitFor(() => got.length === 2, 5_000, 'the next message');
      expect(got[1]?.headers.traceparent).toMatch(TRACEPARENT);
      expect(warnings).toHaveLength(1);
    });
  });
});
