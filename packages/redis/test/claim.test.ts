import { type Bus, connect, silentLogger } from '@busbar/core';
import { brokerAvailable, brokerUrls, collect, createFaultProxy, uniqueName } from '@busbar/testing';
import { Redis } from 'ioredis';
import { describe, expect, it } from 'vitest';
import { driver } from '../src/index.js';

const ok = await brokerAvailable('redis');

describe.runIf(ok)('redis claim loop', () => {
  it('another member claims the pending entries of a member killed mid-batch after the idle threshold', {
    timeout: 60_000,
  }, async () => {
    const target = new URL(brokerUrls.redis);
    const proxy = await createFaultProxy({ target: { host: target.hostname, port: Number(target.port || 6379) } });
    const topic = uniqueName('claim');
    const group = uniqueName('g');
    const options = {
      driver,
      logger: silentLogger,
      claimIdleMs: 2_000,
      claimIntervalMs: 250,
      publishTimeoutMs: 2_000,
      closeTimeoutMs: 500,
    };
    let victim: Bus | undefined;
    let survivor: Bus | undefined;
    const admin = new Redis(brokerUrls.redis);
    try {
      victim = await connect({ url: proxy.url(brokerUrls.redis), ...options });
      const started = collect<string>();
      // The victim takes a batch and never finishes it (it "dies" with the batch in hand).
      await victim.subscribe(
        topic,
        async (m) => {
          started.push(m.id);
          await new Promise(() => {});
        },
        {
          group,
          concurrency: 10,
          prefetch: 10,
          handlerTimeoutMs: 1_000,
          retry: { maxAttempts: 10, initialDelayMs: 1 },
        },
      );
      const ids = await victim.publishBatch(
        topic,
        Array.from({ length: 10 }, (_, n) => ({ payload: { n } })),
      );
      await started.waitForCount(10, 5_000);
      // Kill: its connections are cut and it can never reconnect, so nothing is acked, retried or released.
      proxy.refuse(60_000);
      const killedAt = Date.now();

      survivor = await connect({ url: brokerUrls.redis, ...options });
      const got = collect<{ id: string; attempt: number; at: number }>();
      await survivor.subscribe(topic, async (m) => got.push({ id: m.id, attempt: m.attempt, at: Date.now() }), {
        group,
        handlerTimeoutMs: 1_000,
      });
      await got.waitForCount(10, 15_000);
      expect(new Set(got.items.map((g) => g.id))).toEqual(new Set(ids));
      // Not before the threshold: a slow but alive member keeps its entries.
      expect(Math.min(...got.items.map((g) => g.at)) - killedAt).toBeGreaterThanOrEqual(1_500);
      // The delivery count travels: the claimed entries report their second attempt.
      expect(got.items.every((g) => g.attempt === 2)).toBe(true);
      await expect
        .poll(async () => ((await admin.xpending(`busbar:{${topic}}`, group)) as [number])[0], { timeout: 5_000 })
        .toBe(0);
    } finally {
      await survivor?.close();
      await victim?.close().catch(() => undefined);
      await proxy.close();
      await admin.del(`busbar:{${topic}}`, `busbar:{${topic}}:retry:${group}`);
      admin.disconnect();
    }
  });

  it('a restart with the same consumerName re-reads its own pending entries at once; deleted ones are acked away', {
    timeout: 60_000,
  }, async () => {
    const target = new URL(brokerUrls.redis);
    const proxy = await createFaultProxy({ target: { host: target.hostname, port: Number(target.port || 6379) } });
    const topic = uniqueName('own');
    const group = uniqueName('g');
    const consumerName = uniqueName('fixed');
    // A claim threshold far beyond the test: only the re-read of own pending entries can bring them back.
    const options = {
      driver,
      logger: silentLogger,
      consumerName,
      claimIdleMs: 120_000,
      publishTimeoutMs: 1_000,
      closeTimeoutMs: 200,
    };
    const admin = new Redis(brokerUrls.redis);
    const first = await connect({ url: proxy.url(brokerUrls.redis), ...options });
    let second: Bus | undefined;
    try {
      const started = collect<string>();
      await first.subscribe(
        topic,
        async (m) => {
          started.push(m.id);
          await new Promise(() => {});
        },
        { group, concurrency: 4, prefetch: 4 },
      );
      await first.publishBatch(
        topic,
        ['m0', 'm1', 'm2', 'm3'].map((id) => ({ payload: { id }, id })),
      );
      await started.waitForCount(4, 5_000);
      proxy.refuse(60_000);
      // Two of the pending entries disappear (trimmed or deleted) while pending.
      const entries = (await admin.xrange(`busbar:{${topic}}`, '-', '+')) as [string, string[]][];
      await admin.xdel(
        `busbar:{${topic}}`,
        (entries[0] as [string, string[]])[0],
        (entries[1] as [string, string[]])[0],
      );
      const restartedAt = Date.now();
      second = await connect({ url: brokerUrls.redis, ...options });
      const got = collect<{ id: string; attempt: number }>();
      await second.subscribe(topic, async (m) => got.push({ id: m.id, attempt: m.attempt }), { group });
      await got.waitForCount(2, 10_000);
      expect(Date.now() - restartedAt).toBeLessThan(10_000);
      expect(got.items.map((g) => g.id).sort()).toEqual(['m2', 'm3']);
      expect(got.items.every((g) => g.attempt === 2)).toBe(true);
      await expect
        .poll(async () => ((await admin.xpending(`busbar:{${topic}}`, group)) as [number])[0], { timeout: 5_000 })
        .toBe(0);
    } finally {
      await second?.close();
      await first.close().catch(() => undefined);
      await proxy.close();
      await admin.del(`busbar:{${topic}}`, `busbar:{${topic}}:retry:${group}`);
      admin.disconnect();
    }
  });

  it('a slow member keeps an entry it holds past the threshold (its idle time is refreshed)', {
    timeout: 30_000,
  }, async () => {
    const topic = uniqueName('slow');
    const group = uniqueName('g');
    const options = { driver, logger: silentLogger, claimIdleMs: 1_500, claimIntervalMs: 200 };
    const a = await connect({ url: brokerUrls.redis, ...options });
    const b = await connect({ url: brokerUrls.redis, ...options });
    const runs = collect<string>();
    try {
      // concurrency 1, prefetch 5: four entries wait in a's queue for several thresholds.
      await a.subscribe(
        topic,
        async (m) => {
          runs.push(`a:${m.id}`);
          await new Promise((r) => setTimeout(r, 900));
        },
        { group, prefetch: 5, handlerTimeoutMs: 1_000 },
      );
      await a.publishBatch(
        topic,
        Array.from({ length: 5 }, (_, n) => ({ payload: { n }, id: `m${n}` })),
      );
      await runs.waitForCount(1, 3_000);
      await b.subscribe(topic, async (m) => runs.push(`b:${m.id}`), { group, handlerTimeoutMs: 1_000 });
      await runs.waitForCount(5, 10_000);
      await new Promise((r) => setTimeout(r, 1_000));
      expect(runs.items.filter((r) => r.startsWith('b:'))).toEqual([]);
      expect(runs.items).toHaveLength(5);
    } finally {
      await a.close();
      await b.close();
    }
  });
});
