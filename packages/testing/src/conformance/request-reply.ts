import {
  type Bus,
  BusbarError,
  defineTopic,
  MemoryIdempotencyStore,
  type RemoteError,
  type StandardSchemaV1,
} from '@busbar/core';
import { expect, it } from 'vitest';
import { uniqueName } from '../brokers.js';
import type { Suite } from './context.js';

const sumSchema: StandardSchemaV1<unknown, { sum: number }> = {
  '~standard': {
    version: 1,
    vendor: 'busbar-test',
    validate: (v) =>
      typeof v === 'object' && v !== null && typeof (v as { sum?: unknown }).sum === 'number'
        ? { value: v as { sum: number } }
        : { issues: [{ message: 'expected { sum: number }' }] },
  },
};

/** Request/reply on transports that offer it: typed round trips, groups, and every failure path bounded and typed. */
export function requestReplyTests(s: Suite): void {
  it('answers a typed request, one responder of a group each time', async () => {
    const bus = await s.bus();
    const Add = defineTopic<{ a: number; b: number }, { sum: number }>(s.topic('rr-add'), undefined, {
      response: sumSchema,
    });
    const group = s.group();
    const served = [0, 0];
    for (const i of [0, 1]) {
      await bus.respond(
        Add,
        (m) => {
          served[i] = (served[i] ?? 0) + 1;
          return { sum: m.payload.a + m.payload.b };
        },
        { group, concurrency: 4 },
      );
    }
    await s.settle();
    const replies = await Promise.all(
      Array.from({ length: 20 }, (_, n) => bus.request(Add, { a: n, b: 1 }, { timeoutMs: s.ms(5_000) })),
    );
    expect(replies.map((r) => r.sum)).toEqual(Array.from({ length: 20 }, (_, n) => n + 1));
    expect((served[0] ?? 0) + (served[1] ?? 0)).toBe(20);
  });

  it('a responder that returns nothing answers null: its caller learns the work is done, not an error', async () => {
    const bus = await s.bus();
    const topic = s.topic('rr-void');
    const done: number[] = [];
    await bus.respond<number, void>(topic, async (m) => {
      done.push(m.payload);
    });
    await s.settle();
    expect(await bus.request(topic, 7, { timeoutMs: s.ms(5_000) })).toBeNull();
    expect(done).toEqual([7]);
  });

  it('a wildcard responder answers matching topics where the transport has wildcards, and is unsupported where not', async () => {
    const bus = await s.bus();
    const base = s.topic('rr-wild');
    const pattern = `${base}.*`;
    if (!bus.capabilities.wildcards) {
      // It used to be accepted and then served nothing: every request found no responder.
      const error = await bus.respond(pattern, () => 'never').catch((e: unknown) => e);
      expect(BusbarError.is(error, 'BUSBAR_UNSUPPORTED'), String(error)).toBe(true);
      return;
    }
    await bus.respond<number, string>(pattern, (m) => `${m.topic}:${m.payload}`);
    await s.settle();
    expect(await bus.request(`${base}.eu`, 1, { timeoutMs: s.ms(5_000) })).toBe(`${base}.eu:1`);
  });

  it('a responder that throws gives the caller a RemoteError with its code and no stack; a bad reply fails its schema', async () => {
    const bus = await s.bus();
    const name = s.topic('rr-fail');
    await bus.respond(defineTopic<number, { sum: number }>(name, undefined, { response: sumSchema }), (m) => {
      if (m.payload === 1) throw new RangeError('x'.repeat(5_000));
      if (m.payload === 2) throw null;
      return { wrong: true } as unknown as { sum: number };
    });
    await s.settle();
    const failed = await bus.request(name, 1, { timeoutMs: s.ms(5_000) }).catch((e: unknown) => e);
    expect(BusbarError.is(failed, 'BUSBAR_REMOTE')).toBe(true);
    expect((failed as RemoteError).remoteCode).toBe('RangeError');
    expect((failed as Error).message.length).toBeLessThan(1_100);
    expect((failed as Error).message).not.toContain('at ');
    const thrownNull = await bus.request(name, 2, { timeoutMs: s.ms(5_000) }).catch((e: unknown) => e);
    expect((thrownNull as RemoteError).remoteCode).toBe('NonErrorThrown');
    const invalid = await bus.request(name, 3, { timeoutMs: s.ms(5_000) }).catch((e: unknown) => e);
    expect((invalid as RemoteError).remoteCode).toBe('BUSBAR_VALIDATION');
  });

  it('an error whose message or name is not a string still reaches the caller as a RemoteError, and the responder keeps answering', async () => {
    const bus = await s.bus();
    const name = s.topic('rr-oddError');
    await bus.respond(
      name,
      async (m: { payload: number }) => {
        // `e.message = body.error_description`, when the body had none.
        const error = new Error('set below');
        if (m.payload === 1) (error as { message: unknown }).message = undefined;
        if (m.payload === 2) (error as { name: unknown }).name = 42;
        if (m.payload === 3) (error as { stack: unknown }).stack = { deep: true };
        if (m.payload <= 3) throw error;
        return m.payload;
      },
      { concurrency: 1 },
    );
    await s.settle();
    for (const payload of [1, 2, 3]) {
      const failed = await bus.request(name, payload, { timeoutMs: s.ms(5_000) }).catch((e: unknown) => e);
      expect(BusbarError.is(failed, 'BUSBAR_REMOTE')).toBe(true);
      expect(typeof (failed as RemoteError).remoteCode).toBe('string');
    }
    // One handler at a time: had a failed reply kept its slot, this would time out.
    expect(await bus.request(name, 7, { timeoutMs: s.ms(5_000) })).toBe(7);
  });

  it('a reply over maxPayloadBytes reaches the caller as a RemoteError, and the responder answers the next one', async () => {
    // Sent as it was, a reply over the broker's limit closes the responder's channel or connection (RabbitMQ,
    // MQTT) or is refused by the client, and the caller only learns of it at its timeout.
    const bus = await s.bus();
    const responderBus = await s.bus({ maxPayloadBytes: 2_000 });
    const name = s.topic('rr-big');
    await responderBus.respond(name, (m: { payload: number }) => 'x'.repeat(m.payload));
    await s.settle();
    const big = await bus.request(name, 5_000, { timeoutMs: s.ms(5_000) }).catch((e: unknown) => e);
    expect(BusbarError.is(big, 'BUSBAR_REMOTE')).toBe(true);
    expect((big as RemoteError).remoteCode).toBe('BUSBAR_PAYLOAD_TOO_LARGE');
    expect(await bus.request(name, 10, { timeoutMs: s.ms(5_000) })).toBe('x'.repeat(10));
  });

  it('times out typed (not retryable), aborts on a signal, and fails fast or times out with no responder', async () => {
    const bus = await s.bus();
    const slow = s.topic('rr-slow');
    let late = 0;
    await bus.respond(slow, async () => {
      await new Promise((r) => setTimeout(r, 600));
      late++;
      return 1;
    });
    await s.settle();
    const t0 = Date.now();
    const timedOut = await bus.request(slow, 1, { timeoutMs: 200 }).catch((e: unknown) => e);
    expect(BusbarError.is(timedOut, 'BUSBAR_TIMEOUT')).toBe(true);
    expect((timedOut as BusbarError).retryable).toBe(false);
    expect(Date.now() - t0).toBeLessThan(1_500);
    const controller = new AbortController();
    const aborted = bus.request(slow, 2, { timeoutMs: 5_000, signal: controller.signal }).catch((e: unknown) => e);
    controller.abort();
    expect(BusbarError.is(await aborted, 'BUSBAR_ABORTED')).toBe(true);
    await s.waitFor(() => late >= 2, 5_000, 'the late replies (dropped)');
    // Dropped and counted, never handed to anyone: nothing waits for them any more.
    await s.waitFor(() => diagnostics(bus).lateReplies >= 2, s.ms(5_000), 'the late replies counted');
    expect(diagnostics(bus).pendingRequests).toBe(0);
    const nobody = await bus.request(s.topic('rr-none'), 1, { timeoutMs: 500 }).catch((e: unknown) => e);
    expect(BusbarError.is(nobody, 'BUSBAR_NO_RESPONDERS') || BusbarError.is(nobody, 'BUSBAR_TIMEOUT')).toBe(true);
    // The bus still works.
    const ok = s.topic('rr-ok');
    await bus.respond(ok, (m) => m.payload);
    await s.settle();
    expect(await bus.request(ok, 'still', { timeoutMs: s.ms(5_000) })).toBe('still');
  });

  it('close() rejects every pending request with ClosedError', async () => {
    const bus = await s.bus();
    const responderBus = await s.bus();
    const never = s.topic('rr-never');
    await responderBus.respond(never, () => new Promise(() => undefined), { handlerTimeoutMs: 60_000 });
    await s.settle();
    const pending = [1, 2, 3].map((n) => bus.request(never, n, { timeoutMs: 30_000 }).catch((e: unknown) => e));
    await new Promise((r) => setTimeout(r, 100));
    await bus.close();
    for (const error of await Promise.all(pending)) expect(BusbarError.is(error, 'BUSBAR_CLOSED')).toBe(true);
  });

  it('a handler that finishes after its bus closed: the reply is dropped or sent, never a crash, and another bus serves the topic', async () => {
    const caller = await s.bus();
    const topic = s.topic('rr-late');
    const responderBus = await s.bus({ closeTimeoutMs: 1_000 });
    let release!: () => void;
    const gate = new Promise<void>((resolve) => {
      release = resolve;
    });
    let started = 0;
    await responderBus.respond(topic, async (m) => {
      started++;
      await gate;
      return m.payload;
    });
    await s.settle();
    const outcome = caller.request(topic, 7, { timeoutMs: s.ms(3_000) }).then(
      (value) => value,
      (error: unknown) => (BusbarError.is(error) ? error.code : error),
    );
    await s.waitFor(() => started === 1, 10_000, 'the handler to start');
    const closing = responderBus.close();
    release();
    await closing;
    // Answered (the close waited for it) or not (its reply met a closed transport): both are a caller's outcome.
    expect([7, 'BUSBAR_TIMEOUT']).toContain(await outcome);
    // The handler's late end has had time to fail its reply: anything unhandled would fail this file.
    await new Promise((r) => setTimeout(r, 200));
    const next = await s.bus();
    await next.respond(topic, (m) => m.payload);
    await s.settle();
    expect(await caller.request(topic, 8, { timeoutMs: s.ms(10_000) })).toBe(8);
  });

  it('requesters come and go (each closes, its reply channel with it): the first request of each new one is answered', async () => {
    const responder = await s.bus();
    const topic = s.topic('rr-turnover');
    await responder.respond(topic, (m) => m.payload);
    await s.settle();
    // Kafka: the responder's producer kept the deleted reply topic of the closed requester in every metadata
    // refresh, and the reply to the next new requester timed out with everything queued behind it.
    for (let n = 1; n <= 3; n++) {
      const requester = await s.bus();
      expect(await requester.request(topic, n, { timeoutMs: s.ms(8_000) })).toBe(n);
      await requester.close();
    }
    expect(await responder.request(topic, 4, { timeoutMs: s.ms(8_000) })).toBe(4);
  });

  it('an idempotent responder runs its handler once per request id; a repeat gets BUSBAR_DUPLICATE', async () => {
    const bus = await s.bus();
    const topic = s.topic('rr-once');
    const store = new MemoryIdempotencyStore();
    const group = s.group();
    const runs: string[] = [];
    for (let i = 0; i < 2; i++) {
      await bus.respond<number, number>(
        topic,
        (m) => {
          runs.push(m.id);
          return m.payload + 1;
        },
        { group, idempotency: { store } },
      );
    }
    await s.settle();
    const id = uniqueName('req');
    expect(await bus.request(topic, 1, { id, timeoutMs: s.ms(5_000) })).toBe(2);
    const again = await bus.request(topic, 1, { id, timeoutMs: s.ms(5_000) }).catch((e: unknown) => e);
    expect(BusbarError.is(again, 'BUSBAR_REMOTE')).toBe(true);
    expect((again as RemoteError).remoteCode).toBe('BUSBAR_DUPLICATE');
    expect(await bus.request(topic, 2, { timeoutMs: s.ms(5_000) })).toBe(3);
    expect(runs).toEqual([id, expect.any(String)]);
  });

  const load = s.options.requestLoad ?? 10_000;
  it(
    `${load.toLocaleString('en')} requests in flight are all answered, and nothing is left per request`,
    async () => {
      const bus = await s.bus();
      const echo = s.topic('rr-load');
      await bus.respond(echo, (m) => m.payload, { concurrency: 50 });
      await s.settle();
      const baseline = activeTimers();
      const heapBefore = heapAfterGc();
      const replies = await Promise.all(
        Array.from({ length: load }, (_, n) => bus.request(echo, n, { timeoutMs: s.ms(60_000) })),
      );
      expect(replies).toEqual(Array.from({ length: load }, (_, n) => n));
      await s.waitFor(
        () => {
          const d = diagnostics(bus);
          return d.pendingRequests === 0 && d.servingRequests === 0;
        },
        2_000,
        'no request waiting or being served',
      );
      // A timer per request would show as thousands; a few come and go (heartbeats, pings).
      await s.waitFor(() => activeTimers() <= baseline + 10, 2_000, `timers back to ${baseline} (+10)`);
      expect(diagnostics(bus)).toMatchObject({ pendingRequests: 0, servingRequests: 0, responders: 1 });
      // Only with --expose-gc (NODE_OPTIONS): a request's promise, record and closures kept are over 500 bytes.
      const heapAfter = heapAfterGc();
      if (heapBefore !== undefined && heapAfter !== undefined) {
        expect(heapAfter - heapBefore, 'heap growth after GC (bytes)').toBeLessThan(Math.max(load * 500, 2_000_000));
      }
    },
    s.ms(Math.max(60_000, load * 12)),
  );
}

/** The heap in use after a full GC, when the process runs with --expose-gc; undefined otherwise. */
function heapAfterGc(): number | undefined {
  const gc = (globalThis as { gc?: () => void }).gc;
  if (typeof gc !== 'function') return undefined;
  gc();
  return process.memoryUsage().heapUsed;
}

/** Timers that keep the process alive (unref'd ones are not listed). */
function activeTimers(): number {
  return process.getActiveResourcesInfo().filter((kind) => kind === 'Timeout').length;
}

interface Diagnostics {
  readonly pendingRequests: number;
  readonly servingRequests: number;
  readonly responders: number;
  readonly lateReplies: number;
}

/** The bus's internal counters (not public API): core exposes them under a registry symbol for this suite. */
function diagnostics(bus: Bus): Diagnostics {
  const read = (bus as unknown as Record<symbol, unknown>)[Symbol.for('busbar.diagnostics')];
  if (typeof read !== 'function') throw new Error('This @busbar/core has no request diagnostics (too old a version)');
  return read() as Diagnostics;
}
