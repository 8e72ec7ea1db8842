import diagnostics from 'node:diagnostics_channel';
import {
  type Bus,
  BusbarError,
  backoffDelay,
  connect,
  defineTopic,
  type Logger,
  type Message,
  type SettledEvent,
  silentLogger,
} from '@busbar/core';
import { defineDriver, memoryFaults } from '@busbar/core/transport';
import { THROWABLES, uniqueName, waitFor } from '@busbar/testing';
import { afterEach, describe, expect, it } from 'vitest';
import { z } from 'zod';

const memoryDriverCaps = {
  durableGroups: true,
  ordering: true,
  wildcards: false,
};

const open: Bus[] = [];
afterEach(async () => {
  await Promise.all(open.splice(0).map((b) => b.close()));
});

async function memory(name = uniqueName('hostile'), extra: Record<string, unknown> = {}): Promise<Bus> {
  const bus = await connect({ url: `memory://${name}`, logger: silentLogger, ...extra });
  open.push(bus);
  return bus;
}

async function roundTrip(bus: Bus): Promise<void> {
  const topic = `after.${uniqueName('rt')}`;
  const seen: unknown[] = [];
  const sub = await bus.subscribe(topic, (m) => void seen.push(m.payload), { group: 'rt' });
  await bus.publish(topic, { ok: true });
  await waitFor(() => seen.length === 1, 2_000, 'the round trip after bad input');
  await sub.close();
}

function settledEvents(): { events: SettledEvent[]; stop(): void } {
  const events: SettledEvent[] = [];
  const listener = (e: unknown) => void events.push(e as SettledEvent);
  diagnostics.subscribe('busbar:settled', listener);
  return { events, stop: () => diagnostics.unsubscribe('busbar:settled', listener) };
}

describe('a refused dead-letter write', () => {
  it('backs off instead of looping, runs the handler no more often than the retry policy, and lands once the broker takes it', async () => {
    const name = uniqueName('refuse');
    const lines: string[] = [];
    const logger: Logger = { ...silentLogger, error: (m) => void lines.push(m), warn: (m) => void lines.push(m) };
    const bus = await memory(name, { logger });
    const topic = `refuse.${uniqueName('t')}`;
    const restore = memoryFaults(name).refuse(`${topic}.g.dlq`);
    const watch = settledEvents();
    let runs = 0;
    const healthy: number[] = [];
    try {
      await bus.subscribe<{ n: number }>(
        topic,
        (m) => {
          if (m.payload.n < 0) {
            runs++;
            throw new Error('always');
          }
          healthy.push(m.payload.n);
        },
        { group: 'g', retry: { maxAttempts: 2, initialDelayMs: 10, maxDelayMs: 10 } },
      );
      await bus.publish(topic, { n: -1 });
      await waitFor(() => watch.events.some((e) => e.outcome === 'dead-letter-failed'), 2_000, 'a refused write');
      // Healthy messages keep flowing while the poisoned one waits for its dead-letter write.
      await bus.publishBatch(
        topic,
        Array.from({ length: 50 }, (_, n) => ({ payload: { n } })),
      );
      await waitFor(() => healthy.length === 50, 2_000, 'the healthy messages');
      await new Promise((r) => setTimeout(r, 1_500));
      // Before the fix: released at once, redelivered at once, thousands of runs per second.
      expect(runs).toBe(2);
      const refusals = watch.events.filter((e) => e.outcome === 'dead-letter-failed');
      expect(refusals.length).toBeGreaterThanOrEqual(1);
      expect(refusals.length).toBeLessThanOrEqual(3);
      expect(refusals[0]?.delayMs).toBeGreaterThanOrEqual(800);
      expect(lines.filter((l) => l.includes('refused')).length).toBeLessThanOrEqual(3);

      restore();
      const dead: Message<unknown>[] = [];
      await bus.subscribeDeadLetters(topic, 'g', (m) => void dead.push(m));
      await waitFor(() => dead.length === 1, 10_000, 'the dead letter once writes are taken');
      expect(dead[0]?.deadLetter?.errorMessage).toBe('always');
      expect(dead[0]?.deadLetter?.attempts).toBe(2);
      expect(dead[0]?.headers).toEqual({});
      expect(runs).toBe(2);
      expect(watch.events.some((e) => e.outcome === 'dead-lettered')).toBe(true);
    } finally {
      watch.stop();
      restore();
    }
    await roundTrip(bus);
  });

  it('rejects at subscribe a dead-letter topic that cannot exist', async () => {
    const bus = await memory();
    const long = `a.${'b'.repeat(240)}`;
    const error = await bus.subscribe(long, () => undefined, { group: 'group-x' }).catch((e: unknown) => e);
    expect(BusbarError.is(error, 'BUSBAR_INVALID_TOPIC')).toBe(true);
    expect((error as Error).message).toContain('over the limit');
    await roundTrip(bus);
  });

  it('names a wildcard subscription dead letter after the subscription', async () => {
    const bus = await memory();
    const base = `wild${uniqueName('w').replace(/-/g, '')}`;
    await bus.subscribe(
      `${base}.*`,
      () => {
        throw new Error('no');
      },
      { group: 'g', retry: false },
    );
    await bus.publish(`${base}.x`, 1);
    const dead: Message<unknown>[] = [];
    await bus.subscribeDeadLetters(`${base}.*`, 'g', (m) => void dead.push(m));
    await waitFor(() => dead.length === 1, 2_000, 'the dead letter');
    expect(dead[0]?.topic).toBe(`${base}.any.g.dlq`);
    expect(dead[0]?.deadLetter?.topic).toBe(`${base}.x`);
  });
});

describe('handlers that throw what is not an Error', () => {
  // The conformance suite's list (null, undefined, numbers, strings, null-prototype objects, throwing
  // getters, Proxies), plus a symbol.
  const throwables: [string, () => unknown][] = [...THROWABLES, ['a symbol', () => Symbol('s')]];

  it.each(throwables)('%s: retried, then dead-lettered with a bounded description', async (_label, make) => {
    const bus = await memory();
    const topic = `throw.${uniqueName('t')}`;
    let runs = 0;
    await bus.subscribe(
      topic,
      () => {
        runs++;
        throw make();
      },
      { group: 'g', retry: { maxAttempts: 2, initialDelayMs: 5, maxDelayMs: 5 } },
    );
    const dead: Message<unknown>[] = [];
    await bus.subscribeDeadLetters(topic, 'g', (m) => void dead.push(m));
    await bus.publish(topic, { n: 1 });
    await waitFor(() => dead.length === 1, 3_000, 'the dead letter');
    expect(runs).toBe(2);
    const info = dead[0]?.deadLetter;
    expect(info?.attempts).toBe(2);
    expect(info?.errorName.length).toBeGreaterThan(0);
    expect(info?.errorMessage.length).toBeLessThanOrEqual(1_100);
    await roundTrip(bus);
  });

  it('describes what was thrown', async () => {
    const bus = await memory();
    const topic = `throw.${uniqueName('d')}`;
    await bus.subscribe(
      topic,
      () => {
        throw { code: 7, reason: 'x'.repeat(5_000) };
      },
      { group: 'g', retry: false },
    );
    const dead: Message<unknown>[] = [];
    await bus.subscribeDeadLetters(topic, 'g', (m) => void dead.push(m));
    await bus.publish(topic, 1);
    await waitFor(() => dead.length === 1, 2_000, 'the dead letter');
    expect(dead[0]?.deadLetter?.errorName).toBe('NonErrorThrown');
    expect(dead[0]?.deadLetter?.errorMessage).toContain('code: 7');
    expect(dead[0]?.deadLetter?.errorMessage.length).toBeLessThan(700);
  });
});

describe('delays and timeouts that overflow a timer', () => {
  it('rejects retry delays above 2^31-1 ms', async () => {
    const bus = await memory();
    for (const retry of [{ maxDelayMs: 2 ** 31 }, { initialDelayMs: 2 ** 40, maxDelayMs: 2 ** 40 }]) {
      const error = await bus.subscribe('a.b', () => undefined, { group: 'g', retry }).catch((e: unknown) => e);
      expect(BusbarError.is(error, 'BUSBAR_CONFIG')).toBe(true);
      expect((error as Error).message).toContain('2147483647');
    }
    const error = await bus
      .subscribe('a.b', () => undefined, { group: 'g', handlerTimeoutMs: 2 ** 31 })
      .catch((e: unknown) => e);
    expect(BusbarError.is(error, 'BUSBAR_CONFIG')).toBe(true);
    await roundTrip(bus);
  });

  it('never computes a NaN delay', () => {
    const policy = { maxAttempts: 5, initialDelayMs: 0, maxDelayMs: 100, multiplier: 2, jitter: 0 };
    expect(backoffDelay(policy, 5_000)).toBe(0);
    expect(backoffDelay({ ...policy, initialDelayMs: 1 }, 5_000)).toBe(100);
  });
});

describe('sizes count UTF-8 bytes', () => {
  it('rejects a multibyte payload over the limit that a length check would let through', async () => {
    const bus = await memory(undefined, { maxPayloadBytes: 102 });
    const topic = 'size.t';
    // JSON of 25 emoji is 2 quotes + 100 bytes = 102 bytes, but only 52 UTF-16 code units.
    await expect(bus.publish(topic, '😀'.repeat(25))).resolves.toBeTypeOf('string');
    const over = await bus.publish(topic, `${'😀'.repeat(25)}a`).catch((e: unknown) => e);
    expect(BusbarError.is(over, 'BUSBAR_PAYLOAD_TOO_LARGE')).toBe(true);
    expect((over as BusbarError).retryable).toBe(false);
    const header = await bus.publish(topic, 'x', { headers: { h: 'é'.repeat(60) } }).catch((e: unknown) => e);
    expect(BusbarError.is(header, 'BUSBAR_PAYLOAD_TOO_LARGE')).toBe(true);
    await roundTrip(bus);
  });

  it('rejects headers over the portable 40 KiB in UTF-8 bytes, not retryable', async () => {
    const bus = await memory();
    await expect(bus.publish('size.h', 1, { headers: { h: 'ä'.repeat(20_479) } })).resolves.toBeTypeOf('string');
    const error = await bus.publish('size.h', 1, { headers: { h: 'ä'.repeat(20_480) } }).catch((e: unknown) => e);
    expect(BusbarError.is(error, 'BUSBAR_INVALID_HEADER')).toBe(true);
    expect((error as BusbarError).retryable).toBe(false);
    await roundTrip(bus);
  });
});

describe('wrong types from JavaScript callers', () => {
  it.each<[string, (bus: Bus) => Promise<unknown>, string]>([
    ['a numeric topic', (b) => b.publish(42 as never, 1), 'BUSBAR_INVALID_TOPIC'],
    ['a null topic', (b) => b.publish(null as never, 1), 'BUSBAR_INVALID_TOPIC'],
    ['an object topic', (b) => b.subscribe({ name: 'a' } as never, () => undefined), 'BUSBAR_INVALID_TOPIC'],
    ['a non-function handler', (b) => b.subscribe('a.b', 'nope' as never), 'BUSBAR_CONFIG'],
    ['string publish options', (b) => b.publish('a.b', 1, 'x' as never), 'BUSBAR_CONFIG'],
    ['null publish options', (b) => b.publish('a.b', 1, null as never), 'BUSBAR_CONFIG'],
    ['a numeric header value', (b) => b.publish('a.b', 1, { headers: { a: 1 as never } }), 'BUSBAR_INVALID_HEADER'],
    ['a non-array batch', (b) => b.publishBatch('a.b', 'x' as never), 'BUSBAR_CONFIG'],
    ['a null batch entry', (b) => b.publishBatch('a.b', [null as never]), 'BUSBAR_CONFIG'],
    ['a numeric group', (b) => b.subscribe('a.b', () => undefined, { group: 5 as never }), 'BUSBAR_CONFIG'],
    ['string subscribe options', (b) => b.subscribe('a.b', () => undefined, 'x' as never), 'BUSBAR_CONFIG'],
    ['a numeric topic to redrive', (b) => b.redrive(7 as never, 'g'), 'BUSBAR_INVALID_TOPIC'],
    ['a BigInt payload', (b) => b.publish('a.b', 1n), 'BUSBAR_SERIALIZATION'],
    // A signal that is not one: request and publishBatch called addEventListener / read .aborted on it and threw
    // a raw TypeError.
    ['a plain-object signal to request', (b) => b.request('a.b', 1, { signal: {} as never }), 'BUSBAR_CONFIG'],
    [
      'a null signal to publishBatch',
      (b) => b.publishBatch('a.b', [{ payload: 1 }], { signal: null as never }),
      'BUSBAR_CONFIG',
    ],
    [
      'a string signal to subscribe',
      (b) => b.subscribe('a.b', () => undefined, { signal: 'x' as never }),
      'BUSBAR_CONFIG',
    ],
    // Rejected without closing: the round trip after it runs on the same bus.
    ['a plain-object signal to close', (b) => b.close({ signal: {} as never }), 'BUSBAR_CONFIG'],
    [
      'a circular payload',
      (b) => {
        const o: Record<string, unknown> = {};
        o.self = o;
        return b.publish('a.b', o);
      },
      'BUSBAR_SERIALIZATION',
    ],
    [
      'a payload whose toJSON throws null',
      (b) =>
        b.publish('a.b', {
          toJSON() {
            throw null;
          },
        }),
      'BUSBAR_SERIALIZATION',
    ],
    [
      'a codec that throws a raw TypeError',
      (b) =>
        b.publish(
          defineTopic<number>('a.b', undefined, {
            codec: {
              contentType: 'x/y',
              encode: () => {
                throw new TypeError('broken codec');
              },
              decode: () => 0,
            },
          }),
          1,
        ),
      'BUSBAR_SERIALIZATION',
    ],
  ])('%s is a typed error', async (_label, call, code) => {
    const bus = await memory();
    let error: unknown;
    try {
      await call(bus);
    } catch (e) {
      error = e;
    }
    expect(BusbarError.is(error), String(error)).toBe(true);
    expect((error as BusbarError).code).toBe(code);
    await roundTrip(bus);
  });

  it('a schema whose validate() answers what the spec does not allow: publish fails typed, a received message is dead-lettered, never handed over as undefined', async () => {
    const bus = await memory();
    const answers: [string, unknown][] = [
      ['a number', 42],
      ['null', null],
      ['an empty object', {}],
      ['issues that are not an array', { issues: 'bad' }],
      ['issues without messages', { issues: [null, { path: 'x' }] }],
    ];
    for (const [label, answer] of answers) {
      const name = `schema.${uniqueName('broken')}`;
      const topic = defineTopic(name, { '~standard': { version: 1, vendor: 'test', validate: () => answer } } as never);
      let error: unknown;
      try {
        await bus.publish(topic, { n: 1 });
      } catch (e) {
        error = e;
      }
      expect(BusbarError.is(error, 'BUSBAR_VALIDATION'), `${label}: ${String(error)}`).toBe(true);
      // Received: the same topic name published without the schema, read through it.
      const handled: unknown[] = [];
      await bus.subscribe(topic, (m) => void handled.push(m.payload), { group: 'g' });
      const dead: Message[] = [];
      await bus.subscribeDeadLetters(name, 'g', (m) => void dead.push(m));
      await bus.publish(name, { n: 2 });
      await waitFor(() => dead.length === 1, 5_000, `${label}: the dead letter`);
      expect(handled, label).toEqual([]);
      expect(dead[0]?.deadLetter?.errorName, label).toBe('ValidationError');
    }
    await roundTrip(bus);
  });

  it('defineTopic with a schema that is no Standard Schema is a typed error', () => {
    for (const schema of [{ parse: () => 1 }, 'z.string()', { '~standard': {} }]) {
      let error: unknown;
      try {
        defineTopic('a.b', schema as never);
      } catch (e) {
        error = e;
      }
      expect(BusbarError.is(error, 'BUSBAR_CONFIG'), String(schema)).toBe(true);
    }
  });

  it('defineTopic with a number is a typed error', () => {
    let error: unknown;
    try {
      defineTopic(5 as never);
    } catch (e) {
      error = e;
    }
    expect(BusbarError.is(error, 'BUSBAR_INVALID_TOPIC')).toBe(true);
  });

  it('connect with a number or a malformed %-escape is a typed error', async () => {
    for (const input of [42, null, { url: 7 }, 'amqp://u:%zz@127.0.0.1:1', 'memory://x y']) {
      const error = await connect(input as never).catch((e: unknown) => e);
      expect(BusbarError.is(error, 'BUSBAR_CONFIG'), String(error)).toBe(true);
    }
  });
});

describe('close() honours its bound', () => {
  it('with a handler that never returns', async () => {
    const bus = await memory(undefined, { closeTimeoutMs: 300 });
    let started = false;
    await bus.subscribe(
      'close.hung',
      () => {
        started = true;
        return new Promise(() => undefined);
      },
      { group: 'g' },
    );
    await bus.publish('close.hung', 1);
    await waitFor(() => started, 2_000, 'the handler');
    const t0 = Date.now();
    await bus.close();
    expect(Date.now() - t0).toBeLessThan(1_300);
  });

  it('with a transport whose close never returns (a silent broker)', async () => {
    const silent = defineDriver({
      name: 'silent',
      schemes: ['silent'],
      options: z.object({}),
      create: () => ({
        capabilities: { ...memoryDriverCaps },
        maxPayloadBytes: 1_000,
        connect: async () => undefined,
        publish: () => new Promise<void>(() => undefined),
        subscribe: async () => ({
          stop: () => new Promise<void>(() => undefined),
          close: () => new Promise<void>(() => undefined),
        }),
        declareGroup: async () => undefined,
        close: () => new Promise<void>(() => undefined),
      }),
    });
    const bus = await connect({ url: 'silent://x', driver: silent, closeTimeoutMs: 200, logger: silentLogger });
    await bus.subscribe('close.silent', () => undefined, { group: 'g' });
    const t0 = Date.now();
    await bus.close();
    // closeTimeoutMs, plus the floors each stuck step gets (100 ms) and the disconnect grace (500 ms).
    expect(Date.now() - t0).toBeLessThan(1_200);
  });
});
