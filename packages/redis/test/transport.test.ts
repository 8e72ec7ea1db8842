import { type Bus, bytesCodec, ConfigError, connect, defineTopic, silentLogger } from '@busbar/core';
import { brokerAvailable, brokerUrls, collect, sleep, uniqueName, waitFor } from '@busbar/testing';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { driver } from '../src/index.js';

const ok = await brokerAvailable('redis');

describe.runIf(ok)('redis transport', () => {
  const buses: Bus[] = [];
  let admin: Redis;
  const open = async (options: Record<string, unknown> = {}) => {
    const bus = await connect({ url: brokerUrls.redis, driver, logger: silentLogger, ...options });
    buses.push(bus);
    return bus;
  };
  beforeAll(() => {
    admin = new Redis(brokerUrls.redis);
  });
  afterAll(async () => {
    for (const bus of buses) await bus.close();
    admin.disconnect();
  });

  it('writes one stream entry per message with body, id, key and headers fields (ts only when stale)', async () => {
    const bus = await open();
    const topic = uniqueName('orders');
    await bus.publish(topic, { n: 1 }, { key: 'k1', id: 'id-1', headers: { tenant: 'acme' } });
    const entries = await admin.xrange(`busbar:{${topic}}`, '-', '+');
    expect(entries).toHaveLength(1);
    const fields = Object.fromEntries(chunk((entries[0] as [string, string[]])[1]));
    // Headers one field each (`h:<name>`), the content type always: readable by clients without busbar.
    expect(fields).toEqual({
      body: '{"n":1}',
      id: 'id-1',
      key: 'k1',
      'content-type': 'application/json',
      'h:tenant': 'acme',
    });
    // A fresh entry's publish time is its entry id.
    expect(fields.ts).toBeUndefined();
    await admin.del(`busbar:{${topic}}`);
  });

  it('pipelines concurrent publishes and delivers them to a group, acking in batches', async () => {
    const bus = await open();
    const topic = uniqueName('flow');
    const group = uniqueName('g');
    const got = collect<number>();
    await bus.subscribe(topic, async (m) => got.push((m.payload as { n: number }).n), { group, concurrency: 8 });
    await Promise.all(Array.from({ length: 2_000 }, (_, n) => bus.publish(topic, { n })));
    await got.waitForCount(2_000, 15_000);
    expect(new Set(got.items).size).toBe(2_000);
    await waitFor(
      async () => ((await admin.xpending(`busbar:{${topic}}`, group)) as [number])[0] === 0,
      5_000,
      'all acked',
    );
    await admin.del(`busbar:{${topic}}`, `busbar:{${topic}}:retry:${group}`);
  });

  it('retries through the group retry set with the attempt carried, only for the failing group', async () => {
    const bus = await open();
    const topic = uniqueName('retry');
    const failing = collect<number>();
    const other = collect<number>();
    await bus.subscribe(
      topic,
      async (m) => {
        failing.push(m.attempt);
        if (m.attempt < 3) throw new Error('not yet');
      },
      { group: uniqueName('a'), retry: { maxAttempts: 5, initialDelayMs: 50, maxDelayMs: 100 } },
    );
    await bus.subscribe(topic, async (m) => other.push(m.attempt), { group: uniqueName('b') });
    await bus.publish(topic, { x: 1 });
    await failing.waitForCount(3, 10_000);
    await sleep(300);
    expect(failing.items).toEqual([1, 2, 3]);
    expect(other.items).toEqual([1]);
  });

  it('dead-letters to <topic>.<group>.dlq with metadata, and re-drives', async () => {
    const bus = await open();
    const topic = uniqueName('dl');
    const group = uniqueName('g');
    let fail = true;
    const seen = collect<number>();
    await bus.subscribe(
      topic,
      async (m) => {
        seen.push(m.attempt);
        if (fail) throw new Error('bad order');
      },
      { group, retry: { maxAttempts: 2, initialDelayMs: 10, maxDelayMs: 10 } },
    );
    await bus.publish(topic, { x: 1 }, { id: 'dl-1' });
    // Through the retry stream first: the dead letter still names the entry of the first read.
    await seen.waitForCount(2, 5_000);
    const dlq = `busbar:{${topic}.${group}.dlq}`;
    await waitFor(async () => (await admin.xlen(dlq)) === 1, 5_000, 'dead letter written');
    const [[, fields]] = (await admin.xrange(dlq, '-', '+')) as [[string, string[]]];
    const headers = Object.fromEntries(
      chunk(fields)
        .filter(([name]) => name.startsWith('h:'))
        .map(([name, value]) => [name.slice(2), value]),
    );
    expect(headers['busbar-dl-topic']).toBe(topic);
    expect(headers['busbar-dl-group']).toBe(group);
    expect(headers['busbar-dl-message']).toContain('bad order');
    // The dead letter keeps the original entry id.
    const [[originalEntry]] = (await admin.xrange(`busbar:{${topic}}`, '-', '+')) as [[string, string[]]];
    expect(headers['busbar-source-offset']).toBe(originalEntry);
    fail = false;
    expect(await bus.redrive(topic, group, { idleMs: 500 })).toBe(1);
    await seen.waitForCount(3, 5_000);
  });

  it('keeps binary bodies byte for byte and text bodies with any Unicode', async () => {
    const bus = await open();
    const bin = defineTopic<Uint8Array>(uniqueName('bin'), undefined, { codec: bytesCodec });
    const text = uniqueName('text');
    const bytes = collect<Uint8Array>();
    const texts = collect<unknown>();
    await bus.subscribe(bin, async (m) => bytes.push(m.payload), { group: 'g' });
    await bus.subscribe(text, async (m) => texts.push(m.payload), { group: 'g' });
    const all = Uint8Array.from({ length: 256 }, (_, i) => i);
    await bus.publish(bin, all);
    await bus.publish(text, { s: 'zß水🚀\u0000"' });
    await bytes.waitForCount(1, 5_000);
    await texts.waitForCount(1, 5_000);
    expect(Buffer.from(bytes.items[0] as Uint8Array).equals(Buffer.from(all))).toBe(true);
    expect(texts.items[0]).toEqual({ s: 'zß水🚀\u0000"' });
  });

  it('broadcast subscriptions see messages published after subscribe, each subscriber all of them', async () => {
    const bus = await open();
    const topic = uniqueName('bc');
    await bus.publish(topic, { before: true });
    const a = collect<unknown>();
    const b = collect<unknown>();
    await bus.subscribe(topic, async (m) => a.push(m.payload));
    await bus.subscribe(topic, async (m) => b.push(m.payload));
    for (let n = 0; n < 5; n++) await bus.publish(topic, { n });
    await a.waitForCount(5, 5_000);
    await b.waitForCount(5, 5_000);
    await sleep(100);
    expect(a.items).toEqual([0, 1, 2, 3, 4].map((n) => ({ n })));
    expect(b.items).toHaveLength(5);
  });

  it('reports lag, pending and backlog of a group (XINFO GROUPS, XLEN)', async () => {
    const bus = await open();
    const topic = uniqueName('lag');
    const group = uniqueName('g');
    let release!: () => void;
    const blocked = new Promise<void>((r) => {
      release = r;
    });
    const started = collect<string>();
    await bus.subscribe(
      topic,
      async (m) => {
        started.push(m.id);
        await blocked;
      },
      { group, prefetch: 2, concurrency: 1 },
    );
    await bus.publishBatch(
      topic,
      Array.from({ length: 10 }, (_, n) => ({ payload: { n } })),
    );
    await started.waitForCount(1, 5_000);
    await waitFor(async () => (await bus.lag())[0]?.pending === 2, 5_000, 'two pending');
    const [info] = await bus.lag();
    expect(info).toMatchObject({ topic, group, pending: 2, lag: 8, backlog: 10 });
    release();
    await started.waitForCount(10, 5_000);
    await waitFor(async () => (await bus.lag())[0]?.pending === 0, 5_000, 'nothing pending');
    expect((await bus.lag())[0]).toMatchObject({ lag: 0, pending: 0 });
  });

  it('rejects a claim threshold that does not exceed the handler timeout', async () => {
    const bus = await open({ claimIdleMs: 1_000 });
    await expect(
      bus.subscribe(uniqueName('t'), async () => {}, { group: 'g', handlerTimeoutMs: 1_000 }),
    ).rejects.toBeInstanceOf(ConfigError);
  });

  it('rejects unknown and ill-typed options with the field path', async () => {
    await expect(connect({ url: brokerUrls.redis, driver, logger: silentLogger, maxLen: -1 })).rejects.toThrow(
      /maxLen/,
    );
    await expect(connect({ url: brokerUrls.redis, driver, logger: silentLogger, nope: 1 })).rejects.toBeInstanceOf(
      ConfigError,
    );
    const bad = (options: Record<string, unknown>) =>
      connect({ url: brokerUrls.redis, driver, logger: silentLogger, ...options });
    await expect(bad({ keyPrefix: 'a{b}' })).rejects.toThrow(/keyPrefix/);
    await expect(bad({ maxLen: 5, maxAgeMs: 5 })).rejects.toThrow(/maxAgeMs/);
    await expect(bad({ clusterNodes: ['nohost'] })).rejects.toThrow(/clusterNodes/);
  });

  it('trims approximately with maxLen when asked', async () => {
    const bus = await open({ maxLen: 10 });
    const topic = uniqueName('trim');
    await bus.publishBatch(
      topic,
      Array.from({ length: 500 }, (_, n) => ({ payload: { n } })),
    );
    expect(await admin.xlen(`busbar:{${topic}}`)).toBeLessThan(500);
    await admin.del(`busbar:{${topic}}`);
  });
});

function chunk(flat: string[]): [string, string][] {
  const out: [string, string][] = [];
  for (let i = 0; i + 1 < flat.length; i += 2) out.push([flat[i] as string, flat[i + 1] as string]);
  return out;
}
