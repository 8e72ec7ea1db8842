import { inspect } from 'node:util';
import { BusbarError, defineTopic, type Subscription } from '@busbar/core';
import { expect, it } from 'vitest';
import { createFaultProxy } from '../fault-proxy.js';
import { sleep } from '../wait.js';
import { CANARY, recorder, type Suite, uniqueIds } from './context.js';

export function lifecycleTests(s: Suite): void {
  it('close() and bus.close() are idempotent; publish and subscribe after close reject with BUSBAR_CLOSED', async () => {
    const bus = await s.bus();
    const topic = s.topic('closed');
    const sub = await bus.subscribe(topic, async () => {}, { group: s.group() });
    await Promise.all([sub.close(), sub.close()]);
    await sub.close();
    expect(sub.closed).toBe(true);
    await Promise.all([bus.close(), bus.close()]);
    await expect(bus.publish(topic, 1)).rejects.toSatisfy((e: unknown) => BusbarError.is(e, 'BUSBAR_CLOSED'));
    await expect(bus.subscribe(topic, async () => {})).rejects.toSatisfy((e: unknown) =>
      BusbarError.is(e, 'BUSBAR_CLOSED'),
    );
    expect(bus.health().status).toBe('down');
  });

  it('a group member closed while its prefetched messages still arrive gives them back: the next member gets them soon', async () => {
    // A member closed mid-batch must hand back what it holds and what is still on its way to it, not leave it
    // to the broker's redelivery timeout (NATS: a nak'd message went back to the closing member's pull request).
    const group = s.group();
    const topic = s.topic('handback');
    const first = await s.bus();
    const handled = new Set<string>();
    let sub: Subscription | undefined;
    let closing: Promise<void> | undefined;
    sub = await first.subscribe(
      topic,
      async (m) => {
        handled.add(m.id);
        if (closing === undefined && sub !== undefined) {
          closing = sub.close();
          // The rest of the batch piles up in the socket while this handler holds the event loop.
          const until = Date.now() + 300;
          while (Date.now() < until) {
            // busy
          }
        }
      },
      { group, prefetch: 500, concurrency: 1 },
    );
    await s.settle();
    const publisher = await s.bus();
    const ids = await Promise.all(Array.from({ length: 200 }, (_, n) => publisher.publish(topic, { n })));
    await s.waitFor(() => closing !== undefined, 20_000, 'the first member to take a message');
    await closing;
    const seen = new Set(handled);
    const next = await (await s.bus()).subscribe(topic, async (m) => void seen.add(m.id), { group });
    await s
      .waitFor(() => ids.every((id) => seen.has(id)), 6_000, 'every message through the next member')
      .catch(() => undefined);
    expect(ids.filter((id) => !seen.has(id))).toEqual([]);
    await next.close();
  });

  it('reports healthy connections', async () => {
    const bus = await s.bus();
    const health = bus.health();
    expect(health.status).toBe('up');
    expect(health.connections.length).toBeGreaterThan(0);
    expect(health.connections.every((c) => c.state === 'up')).toBe(true);
  });

  it('rejects bad input with typed errors before sending anything', async () => {
    const bus = await s.bus({ maxPayloadBytes: 4_096 });
    const topic = s.topic('bad');
    const got = recorder();
    await bus.subscribe(topic, got.handler, { group: s.group() });
    await s.settle();
    const code = (p: Promise<unknown>) =>
      p.then(
        () => 'resolved',
        (e: unknown) => (BusbarError.is(e) ? e.code : `untyped: ${String(e)}`),
      );
    expect(await code(bus.publish('a..b', 1))).toBe('BUSBAR_INVALID_TOPIC');
    expect(await code(bus.publish('has space', 1))).toBe('BUSBAR_INVALID_TOPIC');
    expect(await code(bus.publish(`${topic}.*`, 1))).toBe('BUSBAR_INVALID_TOPIC');
    expect(await code(bus.publish('x'.repeat(300), 1))).toBe('BUSBAR_INVALID_TOPIC');
    expect(await code(bus.publish('nul\u0000byte', 1))).toBe('BUSBAR_INVALID_TOPIC');
    expect(await code(bus.publish(topic, 1, { headers: { 'busbar-attempt': '9' } }))).toBe('BUSBAR_INVALID_HEADER');
    expect(await code(bus.publish(topic, 1, { headers: JSON.parse('{"__proto__":"x"}') }))).toBe(
      'BUSBAR_INVALID_HEADER',
    );
    expect(await code(bus.publish(topic, 1, { headers: { ok: 42 as unknown as string } }))).toBe(
      'BUSBAR_INVALID_HEADER',
    );
    expect(await code(bus.publish(topic, 'y'.repeat(5_000)))).toBe('BUSBAR_PAYLOAD_TOO_LARGE');
    const circular: Record<string, unknown> = {};
    circular.self = circular;
    expect(await code(bus.publish(topic, circular))).toBe('BUSBAR_SERIALIZATION');
    expect(await code(bus.publish(topic, { big: 10n }))).toBe('BUSBAR_SERIALIZATION');
    expect(await code(bus.publish(topic, undefined))).toBe('BUSBAR_SERIALIZATION');
    expect(await code(bus.publish(topic, 1, { bogus: true } as never))).toBe('BUSBAR_CONFIG');
    expect(await code(bus.publishBatch<unknown>(topic, [{ payload: 1 }, { payload: circular }]))).toBe(
      'BUSBAR_SERIALIZATION',
    );
    expect(await code(bus.subscribe(topic, async () => {}, { concurrency: 0 }))).toBe('BUSBAR_CONFIG');
    expect(await code(bus.subscribe(topic, async () => {}, { group: 'bad group' }))).toBe('BUSBAR_INVALID_TOPIC');
    const schema = defineTopic(topic, {
      '~standard': {
        version: 1,
        vendor: 'test',
        validate: (v: unknown) => (typeof v === 'string' ? { value: v } : { issues: [{ message: 'want a string' }] }),
      },
    });
    expect(await code(bus.publish(schema, 5 as unknown as string))).toBe('BUSBAR_VALIDATION');
    // None of the rejected messages reached the broker; a good one still flows.
    const ok = await bus.publish(topic, 'fine');
    await s.waitFor(() => got.messages.length >= 1, 20_000, 'the good message');
    await sleep(s.ms(300));
    expect(got.messages.map((m) => m.id)).toEqual([ok]);
  });

  it('close waits for in-flight handlers and releases what did not start; nothing is lost on re-subscribe', async () => {
    const topic = s.topic('inflight');
    const group = s.group();
    const first = await s.bus();
    const finished = new Set<string>();
    let started = 0;
    let gate!: () => void;
    const opened = new Promise<void>((resolve) => {
      gate = resolve;
    });
    const sub = await first.subscribe<number>(
      topic,
      async (m) => {
        started++;
        await opened;
        finished.add(m.id);
      },
      { group, concurrency: 2, prefetch: 5 },
    );
    await s.settle();
    const publisher = await s.bus();
    const ids = await publisher.publishBatch(
      topic,
      Array.from({ length: 20 }, (_, n) => ({ payload: n })),
    );
    await s.waitFor(() => started >= 2, 20_000, 'two handlers in flight');
    const closing = sub.close();
    await sleep(100);
    gate();
    await closing;
    expect(finished.size).toBeGreaterThanOrEqual(2);
    await first.close();

    const second = await s.bus();
    const rest = recorder<number>();
    await second.subscribe<number>(topic, rest.handler, { group });
    const all = () => new Set([...finished, ...uniqueIds(rest.messages)]);
    await s.waitFor(() => all().size >= 20, 30_000, 'every message handled by one bus or the other');
    expect(all()).toEqual(new Set(ids));
  });

  it('a handler still running past the close timeout is released, never acked', async () => {
    const topic = s.topic('stuck');
    const group = s.group();
    const first = await s.bus({ closeTimeoutMs: 300 });
    let running = false;
    await first.subscribe(
      topic,
      async (_m, context) => {
        running = true;
        await new Promise<void>((resolve) => context.signal.addEventListener('abort', () => resolve()));
        await sleep(200); // finishes after it was released: must not ack
      },
      { group },
    );
    await s.settle();
    const id = await first.publish(topic, 'stuck');
    await s.waitFor(() => running, 20_000, 'the handler to start');
    const t0 = Date.now();
    await first.close();
    expect(Date.now() - t0).toBeLessThan(s.ms(10_000));
    await sleep(400);
    const second = await s.bus();
    const again = recorder();
    await second.subscribe(topic, again.handler, { group });
    await s.waitFor(() => again.messages.length >= 1, 30_000, 'the released message');
    expect(again.messages[0]?.id).toBe(id);
    expect(again.messages[0]?.attempt).toBeGreaterThanOrEqual(1);
  });
}

export function durableTests(s: Suite): void {
  it('a consumer that restarts in its group continues where it left off', async () => {
    const topic = s.topic('restart');
    const group = s.group();
    const publisher = await s.bus();
    const before = await s.bus();
    const early = recorder<number>();
    await before.subscribe<number>(topic, early.handler, { group });
    await s.settle();
    const firstIds = await publisher.publishBatch(
      topic,
      Array.from({ length: 10 }, (_, n) => ({ payload: n })),
    );
    await s.waitFor(() => uniqueIds(early.messages).size >= 10, 20_000, 'the first ten');
    await sleep(s.ms(200));
    await before.close();
    // Published while the group has no member.
    const laterIds = await publisher.publishBatch(
      topic,
      Array.from({ length: 10 }, (_, n) => ({ payload: 10 + n })),
    );
    const after = await s.bus();
    const late = recorder<number>();
    await after.subscribe<number>(topic, late.handler, { group });
    await s.waitFor(() => uniqueIds(late.messages).size >= 10, 30_000, 'the ten published while away');
    await sleep(s.ms(500));
    expect(uniqueIds(late.messages)).toEqual(new Set(laterIds));
    expect(firstIds.some((id) => uniqueIds(late.messages).has(id))).toBe(false);
  });

  it('the attempt count survives a consumer restart', async () => {
    const topic = s.topic('attempts');
    const group = s.group();
    const first = await s.bus();
    let failed = false;
    await first.subscribe(
      topic,
      async () => {
        failed = true;
        throw new Error('fail once, then go away');
      },
      { group, retry: { maxAttempts: 5, initialDelayMs: 1_000, maxDelayMs: 1_000, jitter: 0 } },
    );
    await s.settle();
    const id = await first.publish(topic, 'x');
    await s.waitFor(() => failed, 20_000, 'the first failure');
    await sleep(100);
    await first.close();
    const second = await s.bus();
    const again = recorder();
    await second.subscribe(topic, again.handler, { group });
    await s.waitFor(() => again.messages.length >= 1, 30_000, 'the retried message');
    expect(again.messages[0]?.id).toBe(id);
    expect(again.messages[0]?.attempt).toBe(2);
  });
}

export function credentialTests(_s: Suite, url: string): void {
  it('never shows the password when connecting with bad credentials fails', async () => {
    const logged: string[] = [];
    const logger = {
      debug: (m: string, f?: unknown) => void logged.push(m, inspect(f)),
      info: (m: string, f?: unknown) => void logged.push(m, inspect(f)),
      warn: (m: string, f?: unknown) => void logged.push(m, inspect(f)),
      error: (m: string, f?: unknown) => void logged.push(m, inspect(f)),
    };
    const { connect } = await import('@busbar/core');
    const error = await connect({ url, logger, connectTimeoutMs: 3_000 }).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(BusbarError.is(error)).toBe(true);
    const seen = [
      String(error),
      (error as Error).stack ?? '',
      inspect(error, { depth: 10 }),
      JSON.stringify(error),
      inspect((error as Error).cause, { depth: 10 }),
      ...logged,
    ].join('\n');
    expect(seen).not.toContain(CANARY);
  });
}

export function silentBrokerTests(s: Suite, url: string): void {
  it('a broker that accepts TCP and never answers fails connect typed and retryable within connectTimeoutMs; the next connect works', async () => {
    const target = new URL(url.split(',')[0] as string);
    const proxy = await createFaultProxy({ target: { host: target.hostname, port: Number(target.port) } });
    try {
      proxy.blackhole(true);
      const started = Date.now();
      const error = await s.bus({ url: proxy.url(url), connectTimeoutMs: 1_000 }).catch((e: unknown) => e);
      expect(Date.now() - started).toBeLessThan(6_000);
      expect(BusbarError.is(error)).toBe(true);
      expect((error as BusbarError).retryable).toBe(true);
      // The broker answers again: a new bus through the same address connects and works.
      proxy.blackhole(false);
      const bus = await s.bus({ url: proxy.url(url) });
      const topic = s.topic('silent');
      const got = recorder<string>();
      await bus.subscribe(topic, got.handler, { group: s.group() });
      await s.settle();
      await bus.publish(topic, 'answered');
      await s.waitFor(() => got.messages.length === 1, 10_000, 'the message after the silent broker');
    } finally {
      proxy.close();
    }
  });

  it('a subscribe whose request is lost in a dropped connection completes once the broker is back, and the bus works', async () => {
    const target = new URL(url.split(',')[0] as string);
    const proxy = await createFaultProxy({ target: { host: target.hostname, port: Number(target.port) } });
    try {
      const bus = await s.bus({ url: proxy.url(url), connectTimeoutMs: 15_000 });
      const topic = s.topic('lost');
      const got = recorder<string>();
      // The subscribe's requests go nowhere, then the connection drops: no answer to them will ever come.
      proxy.blackhole(true);
      const started = Date.now();
      const subscribing = bus.subscribe(topic, got.handler, { group: s.group() });
      subscribing.catch(() => undefined);
      await sleep(500);
      proxy.blackhole(false);
      proxy.cutAll();
      // Asked again on the new connection, not waited out until connectTimeoutMs and failed.
      await expect(subscribing).resolves.toBeDefined();
      expect(Date.now() - started).toBeLessThan(15_000);
      await s.settle();
      await bus.publish(topic, 'after');
      await s.waitFor(() => got.messages.length === 1, 10_000, 'the message after the lost subscribe');
    } finally {
      await proxy.close();
    }
  });

  // A confirm must come from the connection that wrote: the Redis driver once resolved publishes whose WAIT
  // ioredis had re-sent on the next connection, where it confirmed nothing of theirs.
  it('publishes across connection cuts: each one that resolved is delivered, each one that failed is typed and retryable', async () => {
    const target = new URL(url.split(',')[0] as string);
    const proxy = await createFaultProxy({ target: { host: target.hostname, port: Number(target.port) } });
    try {
      const consumer = await s.bus();
      const topic = s.topic('cuts');
      const got = recorder<string>();
      await consumer.subscribe(topic, got.handler, { group: s.group() });
      await s.settle();
      const publisher = await s.bus({ url: proxy.url(url), publishTimeoutMs: 10_000 });
      const confirmed: string[] = [];
      const failures: unknown[] = [];
      let next = 0;
      const until = Date.now() + 1_500;
      const cuts = (async () => {
        for (let i = 0; i < 3; i++) {
          await sleep(300);
          proxy.cutAll();
        }
      })();
      // Four publishers in a row each, so that some publishes are in flight at every cut.
      await Promise.all(
        Array.from({ length: 4 }, async () => {
          while (Date.now() < until) {
            const payload = `m${next++}`;
            try {
              await publisher.publish(topic, payload);
              confirmed.push(payload);
            } catch (error) {
              failures.push(error);
              await sleep(50);
            }
          }
        }),
      );
      await cuts;
      for (const failure of failures) {
        expect(BusbarError.is(failure), inspect(failure)).toBe(true);
        expect((failure as BusbarError).retryable, inspect(failure)).toBe(true);
      }
      expect(confirmed.length).toBeGreaterThan(0);
      const missing = () => {
        const delivered = new Set(got.messages.map((m) => m.payload));
        return confirmed.filter((p) => !delivered.has(p));
      };
      await s.waitFor(() => missing().length === 0, 20_000, 'every confirmed publish delivered').catch(() => undefined);
      expect(missing()).toEqual([]);
      // The publisher's bus still works.
      await publisher.publish(topic, 'after');
      await s.waitFor(() => got.messages.some((m) => m.payload === 'after'), 10_000, 'the publish after the cuts');
    } finally {
      await proxy.close();
    }
  });
}
