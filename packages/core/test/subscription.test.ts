import diagnostics from 'node:diagnostics_channel';
import { type Bus, connect, MemoryIdempotencyStore, type SettledEvent, silentLogger } from '@busbar/core';
import { uniqueName, waitFor } from '@busbar/testing';
import { afterEach, describe, expect, it } from 'vitest';

const buses: Bus[] = [];
async function bus(): Promise<Bus> {
  const b = await connect({ url: `memory://${uniqueName('unit')}`, logger: silentLogger, closeTimeoutMs: 500 });
  buses.push(b);
  return b;
}
afterEach(async () => {
  await Promise.all(buses.splice(0).map((b) => b.close()));
});

function settled(): { events: SettledEvent[]; stop: () => void } {
  const events: SettledEvent[] = [];
  const listener = (e: unknown) => void events.push(e as SettledEvent);
  diagnostics.subscribe('busbar:settled', listener);
  return { events, stop: () => diagnostics.unsubscribe('busbar:settled', listener) };
}

describe('subscription runtime', () => {
  it('fails a handler that outlives handlerTimeoutMs, aborts its signal and retries the message', async () => {
    const b = await bus();
    const attempts: number[] = [];
    let aborted = false;
    await b.subscribe(
      'slow.t',
      async (m, context) => {
        attempts.push(m.attempt);
        if (m.attempt === 1) {
          context.signal.addEventListener('abort', () => {
            aborted = true;
          });
          await new Promise((resolve) => setTimeout(resolve, 2_000));
        }
      },
      { group: 'g', handlerTimeoutMs: 100, retry: { initialDelayMs: 10, maxDelayMs: 10 } },
    );
    await b.publish('slow.t', 1);
    await waitFor(() => attempts.length >= 2, 3_000, 'the retry');
    expect(attempts.slice(0, 2)).toEqual([1, 2]);
    expect(aborted).toBe(true);
  });

  it('a message its driver acks synchronously reports one acked outcome with the handler time, and nothing waits on it', async () => {
    const b = await bus();
    const events = settled();
    try {
      // memory:// acks synchronously: core skips the promise reaction it needs for a broker's asynchronous ack.
      await b.subscribe(
        'sync-ack.t',
        () => {
          const until = Date.now() + 5;
          while (Date.now() < until) {
            // a handler that takes 5 ms of CPU
          }
        },
        { group: 'g' },
      );
      const ids = await Promise.all([b.publish('sync-ack.t', 1), b.publish('sync-ack.t', 2)]);
      await waitFor(() => events.events.filter((e) => ids.includes(e.id)).length >= 2, 2_000, 'the outcomes');
      await new Promise((resolve) => setTimeout(resolve, 20));
      const mine = events.events.filter((e) => ids.includes(e.id));
      expect(mine.map((e) => e.outcome)).toEqual(['acked', 'acked']);
      for (const e of mine) expect(e.durationMs).toBeGreaterThanOrEqual(5);
      // close() has no ack left to wait for.
      const started = Date.now();
      await b.close();
      // Far below closeTimeoutMs (what a wait on an ack would take), with room for a loaded CI machine.
      expect(Date.now() - started).toBeLessThan(2_000);
    } finally {
      events.stop();
    }
  });

  it('drops (acks) an exhausted message when dead-lettering is off, and says so', async () => {
    const b = await bus();
    const events = settled();
    try {
      await b.subscribe('drop.t', async () => Promise.reject(new Error('no')), {
        group: 'g',
        deadLetter: false,
        retry: false,
      });
      const id = await b.publish('drop.t', 1);
      await waitFor(() => events.events.some((e) => e.id === id), 2_000, 'the outcome');
      expect(events.events.find((e) => e.id === id)?.outcome).toBe('dropped');
    } finally {
      events.stop();
    }
  });

  it('dead-letters to a configured topic', async () => {
    const b = await bus();
    const dead: unknown[] = [];
    await b.subscribe('custom.dlq.reader', async (m) => void dead.push(m.payload), { group: 'r' });
    await b.subscribe('custom.t', async () => Promise.reject(new Error('no')), {
      group: 'g',
      retry: false,
      deadLetter: { topic: 'custom.dlq.reader' },
    });
    await b.publish('custom.t', { x: 1 });
    await waitFor(() => dead.length === 1, 2_000, 'the dead letter');
    expect(dead[0]).toEqual({ x: 1 });
  });

  it('retries broadcast subscriptions in process', async () => {
    const b = await bus();
    const attempts: number[] = [];
    await b.subscribe(
      'bcast.t',
      async (m) => {
        attempts.push(m.attempt);
        if (m.attempt < 3) throw new Error('again');
      },
      { retry: { maxAttempts: 3, initialDelayMs: 10, maxDelayMs: 10 } },
    );
    await b.publish('bcast.t', 1);
    await waitFor(() => attempts.length === 3, 2_000, 'three attempts');
    expect(attempts).toEqual([1, 2, 3]);
  });

  it('does not feed dead letters back into a wildcard group', async () => {
    const b = await bus();
    const seen: string[] = [];
    await b.subscribe(
      'wild.#',
      async (m) => {
        seen.push(m.topic);
        throw new Error('always');
      },
      { group: 'g', retry: false },
    );
    await b.publish('wild.a', 1);
    await new Promise((resolve) => setTimeout(resolve, 200));
    expect(seen).toEqual(['wild.a']);
  });

  it('publishes lifecycle events with outcomes and durations', async () => {
    const b = await bus();
    const events = settled();
    const starts: unknown[] = [];
    const publishStart = (context: unknown) => void starts.push(context);
    diagnostics
      .tracingChannel('busbar:publish')
      .subscribe({ start: publishStart, end() {}, asyncStart() {}, asyncEnd() {}, error() {} });
    try {
      await b.subscribe(
        'ev.t',
        async (m) => {
          if (m.attempt === 1) throw new Error('first');
        },
        { group: 'g', retry: { initialDelayMs: 5, maxDelayMs: 5, jitter: 0 } },
      );
      const id = await b.publish('ev.t', 1, { headers: { a: 'b' } });
      await waitFor(() => events.events.filter((e) => e.id === id).length >= 2, 2_000, 'two outcomes');
      const mine = events.events.filter((e) => e.id === id);
      expect(mine.map((e) => e.outcome)).toEqual(['retried', 'acked']);
      expect(mine[0]?.error?.message).toBe('first');
      expect(mine[0]?.delayMs).toBe(5);
      expect(mine[1]?.attempt).toBe(2);
      expect(starts).toContainEqual(expect.objectContaining({ topic: 'ev.t', system: 'memory' }));
    } finally {
      events.stop();
      diagnostics
        .tracingChannel('busbar:publish')
        .unsubscribe({ start: publishStart, end() {}, asyncStart() {}, asyncEnd() {}, error() {} });
    }
  });

  it('lets a publish-start subscriber add headers that reach the consumer (trace propagation)', async () => {
    const b = await bus();
    const inject = (context: unknown) => {
      for (const m of (context as { messages: { headers: Record<string, string> }[] }).messages)
        m.headers.traceparent = '00-abc-def-01';
    };
    const channel = diagnostics.tracingChannel('busbar:publish');
    const handlers = { start: inject, end() {}, asyncStart() {}, asyncEnd() {}, error() {} };
    channel.subscribe(handlers);
    try {
      const got: Record<string, string>[] = [];
      await b.subscribe('trace.t', async (m) => void got.push({ ...m.headers }), { group: 'g' });
      await b.publish('trace.t', 1);
      await waitFor(() => got.length === 1, 2_000, 'the message');
      expect(got[0]).toEqual({ traceparent: '00-abc-def-01' });
    } finally {
      channel.unsubscribe(handlers);
    }
  });
});

describe('bus.lag()', () => {
  it('reports backlog and unsettled messages per group where the transport measures it', async () => {
    const b = await bus();
    let release!: () => void;
    const gate = new Promise<void>((resolve) => {
      release = resolve;
    });
    await b.subscribe('lag.t', () => gate, { group: 'g', prefetch: 2 });
    await b.publishBatch(
      'lag.t',
      Array.from({ length: 10 }, (_, n) => ({ payload: n })),
    );
    await waitFor(async () => (await b.lag())[0]?.pending === 2, 2_000, 'two in flight');
    expect(await b.lag()).toEqual([{ topic: 'lag.t', group: 'g', lag: 8, pending: 2 }]);
    release();
    await waitFor(async () => (await b.lag())[0]?.lag === 0, 2_000, 'drained');
  });
});

describe('idempotency with handler timeouts', () => {
  it('never runs the retry of a timed-out handler beside the original', async () => {
    const b = await bus();
    const store = new MemoryIdempotencyStore();
    let running = 0;
    let overlap = false;
    const runs: number[] = [];
    await b.subscribe(
      'idem.slow',
      async (m) => {
        running++;
        if (running > 1) overlap = true;
        runs.push(m.attempt);
        if (m.attempt === 1) await new Promise((resolve) => setTimeout(resolve, 600));
        running--;
      },
      {
        group: 'g',
        concurrency: 4,
        handlerTimeoutMs: 100,
        retry: { initialDelayMs: 10, maxDelayMs: 10 },
        idempotency: { store, leaseMs: 1_000 },
      },
    );
    await b.publish('idem.slow', 1);
    await waitFor(() => runs.length >= 2, 5_000, 'the retry to run once the lease lapsed');
    expect(overlap).toBe(false);
    expect(runs).toEqual([1, 2]);
  });
});

describe('subscribeBatch bounds', () => {
  it('a batch handler that never settles does not hold back later batches', async () => {
    const bus = await connect({ url: 'memory://batch-hang', logger: silentLogger });
    const handled: number[] = [];
    let calls = 0;
    await bus.subscribeBatch<number>(
      'batch.hang',
      async (messages) => {
        if (calls++ === 0) return new Promise<void>(() => undefined);
        handled.push(...messages.map((m) => m.payload));
      },
      { group: 'g', handlerTimeoutMs: 300, retry: { maxAttempts: 5, initialDelayMs: 50, jitter: 0 } },
    );
    await bus.publish('batch.hang', 1);
    await new Promise((r) => setTimeout(r, 100));
    await bus.publish('batch.hang', 2);
    const deadline = Date.now() + 10_000;
    while (handled.length < 2 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    expect(handled.sort()).toEqual([1, 2]);
    await bus.close();
  });
});
