import { BusbarError, connect, type Message, silentLogger } from '@busbar/core';
import { brokerAvailable, brokerUrls, collect, createFaultProxy, uniqueName, waitFor } from '@busbar/testing';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { driver } from '../src/index.js';
import { streamKey } from '../src/keys.js';

const ok = await brokerAvailable('redis');
const open = (over: Record<string, unknown> = {}) =>
  connect({ url: brokerUrls.redis, driver, logger: silentLogger, ...over });

describe.runIf(ok)('redis: foreign producers and refused writes', () => {
  let raw: Redis;
  beforeAll(() => {
    raw = new Redis(brokerUrls.redis);
  });
  afterAll(async () => {
    await raw?.quit();
  });

  it('entries with an absurd id, non-numeric or out-of-range ts and odd header shapes are delivered sanely', async () => {
    const bus = await open();
    try {
      const topic = uniqueName('foreign');
      const group = uniqueName('g');
      const got = collect<Message<unknown>>();
      await bus.subscribe(topic, async (m) => void got.push(m), { group });
      const key = streamKey('busbar:', topic);
      const entries: string[][] = [
        ['body', '"a"', 'id', ''],
        ['body', '"b"', 'id', 'x'.repeat(2_000)],
        ['body', '"c"', 'id', 'bad\nid\u0000'],
        ['body', '"d"', 'ts', 'yesterday', 'h', '{"n":1,"t":true,"o":{"a":[1,2]},"z":null,"__proto__":"p"}'],
        ['body', '"e"', 'ts', '99999999999999999999999', 'h', '[1,2,3]'],
        ['body', '"f"', 'h', '{not json', 'h', '"just a string"'],
        ['body', '"g"', 'h', '{"busbar-attempt":"lots","busbar-ts":"soon"}'],
        ['body', '"h"', 'r', '{"i":5,"h":"x","b":123,"a":"two"}'],
        ['body', '"i"', 'r', '{"i":"rid","h":{"k":"v"},"b":"Imki","a":1e400,"t":"no"}'],
      ];
      const ids: string[] = [];
      for (const fields of entries) ids.push(String(await raw.xadd(key, '*', ...fields)));
      await got.waitForCount(entries.length, 10_000);
      const byBody = new Map(got.items.map((m) => [String(m.payload), m]));
      for (const m of got.items) {
        expect(Number.isFinite(m.timestamp.getTime())).toBe(true);
        expect(Number.isInteger(m.attempt) && m.attempt >= 1).toBe(true);
        expect(typeof m.id).toBe('string');
        expect(m.id.length).toBeGreaterThan(0);
        expect(m.id.length).toBeLessThanOrEqual(1_024);
        expect([...m.id].some((c) => c.charCodeAt(0) < 0x20)).toBe(false);
        for (const value of Object.values(m.headers)) expect(typeof value).toBe('string');
        expect(Object.getPrototypeOf(m.headers)).not.toBe('p');
      }
      // An unusable id falls back to the entry id.
      expect(byBody.get('a')?.id).toBe(ids[0]);
      expect(byBody.get('b')?.id).toBe(ids[1]);
      expect(byBody.get('c')?.id).toBe(ids[2]);
      const d = byBody.get('d') as Message<unknown>;
      expect(d.timestamp.getTime()).toBe(Number((ids[3] as string).split('-')[0]));
      expect(d.headers).toMatchObject({ n: '1', t: 'true', o: '{"a":[1,2]}', z: '' });
      expect(Object.hasOwn(d.headers, '__proto__')).toBe(true);
      expect(byBody.get('e')?.timestamp.getTime()).toBe(Number((ids[4] as string).split('-')[0]));
      expect(byBody.get('g')?.attempt).toBe(1);

      // The reader is still alive: a normal round trip after the foreign entries.
      const id = await bus.publish(topic, 'after');
      await waitFor(() => got.items.some((m) => m.id === id), 5_000, 'the message after the foreign ones');
    } finally {
      await bus.close();
    }
  });

  it('a topic whose key holds a string (WRONGTYPE): publish and declareGroup fail typed; after DEL both work', async () => {
    const bus = await open({ publishTimeoutMs: 2_000 });
    try {
      const topic = uniqueName('wrongtype');
      const key = streamKey('busbar:', topic);
      await raw.set(key, 'not a stream');
      const single = await bus.publish(topic, 1).catch((e: unknown) => e);
      expect(BusbarError.is(single, 'BUSBAR_PUBLISH')).toBe(true);
      expect((single as BusbarError).retryable).toBe(false);
      expect(String((single as Error).message)).toContain('WRONGTYPE');
      const batch = await bus.publishBatch(topic, [{ payload: 1 }, { payload: 2 }]).catch((e: unknown) => e);
      expect(BusbarError.is(batch, 'BUSBAR_PUBLISH')).toBe(true);
      const sub = await bus.subscribe(topic, async () => undefined, { group: 'g' }).catch((e: unknown) => e);
      expect(BusbarError.is(sub)).toBe(true);
      expect(String((sub as Error).message)).toContain('WRONGTYPE');
      await raw.del(key);
      // Nothing cached from the failures: the same bus subscribes and publishes normally now.
      const got = collect<number>();
      await bus.subscribe(topic, async (m) => void got.push(m.payload as number), { group: 'g' });
      await bus.publish(topic, 7);
      await bus.publishBatch(topic, [{ payload: 8 }, { payload: 9 }]);
      await got.waitForCount(3, 5_000);
      expect([...got.items].sort()).toEqual([7, 8, 9]);
    } finally {
      await bus.close();
    }
  });
});

describe.runIf(ok)('redis: close() while the server is unreachable', () => {
  it('returns within closeTimeoutMs with group and broadcast subscriptions open', { timeout: 30_000 }, async () => {
    const target = new URL(brokerUrls.redis);
    const proxy = await createFaultProxy({ target: { host: target.hostname, port: Number(target.port || 6379) } });
    const bus = await open({ url: proxy.url(brokerUrls.redis), closeTimeoutMs: 2_000, publishTimeoutMs: 10_000 });
    try {
      const topic = uniqueName('down');
      const got = collect<string>();
      await bus.subscribe(topic, async (m) => void got.push(m.id), { group: uniqueName('g') });
      await bus.subscribe(topic, async (m) => void got.push(m.id));
      await bus.publish(topic, 'before');
      await got.waitForCount(2, 5_000);
      proxy.refuse(60_000);
      await waitFor(() => bus.health().status !== 'up', 5_000, 'the outage noticed');
      const started = Date.now();
      await bus.close();
      const elapsed = Date.now() - started;
      expect(elapsed).toBeLessThan(2_500);
    } finally {
      await bus.close().catch(() => undefined);
      await proxy.close();
    }
  });

  it('returns within closeTimeoutMs when the server stops answering (blackhole)', { timeout: 30_000 }, async () => {
    const target = new URL(brokerUrls.redis);
    const proxy = await createFaultProxy({ target: { host: target.hostname, port: Number(target.port || 6379) } });
    const bus = await open({ url: proxy.url(brokerUrls.redis), closeTimeoutMs: 2_000, publishTimeoutMs: 10_000 });
    try {
      const topic = uniqueName('silent');
      const got = collect<string>();
      await bus.subscribe(topic, async (m) => void got.push(m.id), { group: uniqueName('g') });
      await bus.publish(topic, 'before');
      await got.waitForCount(1, 5_000);
      proxy.blackhole(true);
      const started = Date.now();
      await bus.close();
      expect(Date.now() - started).toBeLessThan(2_500);
    } finally {
      await bus.close().catch(() => undefined);
      await proxy.close();
    }
  });
});

describe.runIf(ok)('redis: a topic whose key holds another Redis type', () => {
  it('subscribing is an InvalidTopicError (not a connection error), and the bus still works', async () => {
    const redis = new Redis(brokerUrls.redis);
    const bus = await connect({ url: brokerUrls.redis, driver, logger: silentLogger });
    try {
      const topic = uniqueName('wrongtype');
      await redis.set(streamKey('busbar:', topic), 'not a stream');
      const error = await bus.subscribe(topic, () => undefined, { group: 'g' }).catch((e: unknown) => e);
      expect(BusbarError.is(error, 'BUSBAR_INVALID_TOPIC')).toBe(true);
      expect((error as BusbarError).retryable).toBe(false);
      await redis.del(streamKey('busbar:', topic));
      const other = uniqueName('after');
      const got = collect<Message<unknown>>();
      await bus.subscribe(other, (m) => got.push(m), { group: 'g' });
      await bus.publish(other, 1);
      await got.waitForCount(1, 10_000);
    } finally {
      await bus.close();
      redis.disconnect();
    }
  });
});

describe.runIf(ok)('redis: a server that stops answering', () => {
  it('is reported in health within about connectTimeoutMs, and the bus works again once it answers', {
    timeout: 60_000,
  }, async () => {
    const target = new URL(brokerUrls.redis);
    const proxy = await createFaultProxy({ target: { host: target.hostname, port: Number(target.port || 6379) } });
    const bus = await connect({
      url: proxy.url(brokerUrls.redis),
      driver,
      logger: silentLogger,
      connectTimeoutMs: 1_000,
      publishTimeoutMs: 10_000,
      blockMs: 200,
    });
    try {
      const topic = uniqueName('silent');
      const got = collect<string>();
      await bus.subscribe(topic, async (m) => void got.push(m.id), { group: 'g' });
      proxy.blackhole(true);
      // ioredis stays connected to a silent server: nothing but a PING that goes unanswered can tell.
      await waitFor(async () => (await bus.health()).status !== 'up', 10_000, 'the silence noticed');
      proxy.blackhole(false);
      await waitFor(async () => (await bus.health()).status === 'up', 20_000, 'up again');
      const id = await bus.publish(topic, 'after');
      // The subscription's blocking read was lost in the silence too: its connection is dropped and it reads again.
      await waitFor(() => got.items.includes(id), 20_000, 'delivery after the silence');
    } finally {
      await bus.close();
      await proxy.close();
    }
  });
});
