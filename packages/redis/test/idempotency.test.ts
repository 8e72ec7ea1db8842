import { BusbarError, connect, silentLogger } from '@busbar/core';
import { brokerAvailable, brokerUrls, collect, describeIdempotencyStore, uniqueName } from '@busbar/testing';
import { afterAll, describe, expect, it } from 'vitest';
import { driver, RedisIdempotencyStore } from '../src/index.js';

const ok = await brokerAvailable('redis');

describe.runIf(ok)('redis idempotency store contract', () => {
  const stores: RedisIdempotencyStore[] = [];
  const prefix = `${uniqueName('idem')}:`;
  afterAll(async () => {
    for (const store of stores) await store.close();
  });
  describeIdempotencyStore('redis', () => {
    const store = new RedisIdempotencyStore({ url: brokerUrls.redis, keyPrefix: prefix });
    stores.push(store);
    return store;
  });
});

describe.runIf(ok)('RedisIdempotencyStore', () => {
  const prefix = `${uniqueName('idem')}:`;
  const store = new RedisIdempotencyStore({ url: brokerUrls.redis, keyPrefix: prefix });
  const other = new RedisIdempotencyStore({ url: brokerUrls.redis, keyPrefix: prefix });
  afterAll(async () => {
    await store.close();
    await other.close();
  });

  it('claims, reports busy while claimed, done after complete', async () => {
    const key = uniqueName('k');
    expect(await store.claim(key, 5_000)).toBe('claimed');
    expect(await other.claim(key, 5_000)).toBe('busy');
    await store.complete(key, 60_000);
    expect(await other.claim(key, 5_000)).toBe('done');
  });

  it('lets a claim lapse after its lease, and a release free it at once', async () => {
    const key = uniqueName('k');
    expect(await store.claim(key, 50)).toBe('claimed');
    await new Promise((r) => setTimeout(r, 120));
    expect(await other.claim(key, 5_000)).toBe('claimed');
    await other.release(key);
    expect(await store.claim(key, 5_000)).toBe('claimed');
  });

  it('never releases a done key, and done expires after its TTL', async () => {
    const key = uniqueName('k');
    await store.claim(key, 5_000);
    // A TTL long enough that a loaded CI machine still answers 'done' before it lapses (80 ms did not).
    await store.complete(key, 2_000);
    await store.release(key);
    expect(await other.claim(key, 5_000)).toBe('done');
    await new Promise((r) => setTimeout(r, 2_100));
    expect(await other.claim(key, 5_000)).toBe('claimed');
  });

  it('two consumers racing on one key: exactly one wins each round', async () => {
    for (let round = 0; round < 20; round++) {
      const key = uniqueName('race');
      const results = await Promise.all([
        store.claim(key, 5_000),
        other.claim(key, 5_000),
        store.claim(key, 5_000),
        other.claim(key, 5_000),
      ]);
      expect(results.filter((r) => r === 'claimed')).toHaveLength(1);
      expect(results.filter((r) => r === 'busy')).toHaveLength(3);
    }
  });

  it('two buses in one group run a duplicated message once', async () => {
    const topic = uniqueName('dup');
    const group = uniqueName('g');
    const runs = collect<string>();
    const handler = async (m: { id: string }) => {
      runs.push(m.id);
      await new Promise((r) => setTimeout(r, 100));
    };
    const a = await connect({ url: brokerUrls.redis, driver, logger: silentLogger });
    const b = await connect({ url: brokerUrls.redis, driver, logger: silentLogger });
    try {
      await a.subscribe(topic, handler, { group, concurrency: 4, idempotency: { store, ttlMs: 60_000 } });
      await b.subscribe(topic, handler, { group, concurrency: 4, idempotency: { store: other, ttlMs: 60_000 } });
      // Same id published 5 times (a publish retried after a timeout looks like this).
      for (let i = 0; i < 5; i++) await a.publish(topic, { i }, { id: 'same-id' });
      await a.publish(topic, { last: true }, { id: 'other-id' });
      await runs.waitForCount(2, 5_000);
      await new Promise((r) => setTimeout(r, 500));
      expect(runs.items.filter((id) => id === 'same-id')).toHaveLength(1);
    } finally {
      await a.close();
      await b.close();
    }
  });

  it('rejects a non-redis URL and fails with a redacted busbar error when Redis is unreachable', async () => {
    expect(() => new RedisIdempotencyStore({ url: 'postgres://x' })).toThrow(/redis:\/\//);
    const dead = new RedisIdempotencyStore({ url: 'redis://:Canary-Idem-Pw@127.0.0.1:1', connectTimeoutMs: 500 });
    const error = await dead.claim('k', 1_000).catch((e: unknown) => e);
    expect(BusbarError.is(error, 'BUSBAR_CONNECTION')).toBe(true);
    expect(JSON.stringify(error) + String((error as Error).stack)).not.toContain('Canary-Idem-Pw');
    await dead.close();
  });
});
