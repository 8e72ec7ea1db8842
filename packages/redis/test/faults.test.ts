import { type Bus, connect, silentLogger } from '@busbar/core';
import { brokerAvailable, brokerUrls, createFaultProxy, sleep, uniqueName, waitFor } from '@busbar/testing';
import { Redis } from 'ioredis';
import { describe, expect, it } from 'vitest';
import { driver } from '../src/index.js';
import { freePort, installed, REDIS_SERVER, startRedis, stopRedis, tempDir } from './private-redis.js';

const ok = await brokerAvailable('redis');

interface Tally {
  confirmed: Set<string>;
  failed: number;
  received: Map<string, number>;
}

/** Publishes `total` messages from `workers` concurrent loops, noting which publishes resolved. */
async function publishAll(
  bus: Bus,
  topic: string,
  total: number,
  workers: number,
  tally: Tally,
  onProgress: (done: number) => Promise<void> | void,
) {
  let next = 0;
  await Promise.all(
    Array.from({ length: workers }, async () => {
      while (next < total) {
        const n = next++;
        const id = `m-${n}`;
        try {
          await bus.publish(topic, { n }, { id });
          tally.confirmed.add(id);
        } catch {
          tally.failed++;
        }
        await onProgress(tally.confirmed.size + tally.failed);
      }
    }),
  );
}

function summary(tally: Tally) {
  let duplicates = 0;
  for (const count of tally.received.values()) if (count > 1) duplicates += count - 1;
  const lost = [...tally.confirmed].filter((id) => !tally.received.has(id)).length;
  return { confirmed: tally.confirmed.size, failed: tally.failed, received: tally.received.size, lost, duplicates };
}

describe.runIf(ok)('redis faults', () => {
  it('10,000 messages through a group while connections are cut 3 times: none lost whose publish resolved', {
    timeout: 120_000,
  }, async () => {
    const target = new URL(brokerUrls.redis);
    const proxy = await createFaultProxy({ target: { host: target.hostname, port: Number(target.port || 6379) } });
    const url = proxy.url(brokerUrls.redis);
    const topic = uniqueName('cuts');
    const group = uniqueName('g');
    const options = {
      url,
      driver,
      logger: silentLogger,
      claimIdleMs: 5_000,
      claimIntervalMs: 500,
      publishTimeoutMs: 10_000,
    };
    const tally: Tally = { confirmed: new Set(), failed: 0, received: new Map() };
    const consumer = await connect(options);
    const publisher = await connect(options);
    const admin = new Redis(brokerUrls.redis);
    try {
      await consumer.subscribe(
        topic,
        async (m) => {
          tally.received.set(m.id, (tally.received.get(m.id) ?? 0) + 1);
        },
        { group, concurrency: 16, handlerTimeoutMs: 2_000 },
      );
      const cutsAt = [2_500, 5_000, 7_500];
      let cuts = 0;
      await publishAll(publisher, topic, 10_000, 50, tally, async (done) => {
        if (cuts < cutsAt.length && done >= (cutsAt[cuts] as number)) {
          cuts++;
          proxy.cutAll();
        }
      });
      expect(cuts).toBe(3);
      await waitFor(
        () => [...tally.confirmed].every((id) => tally.received.has(id)),
        60_000,
        'every confirmed message',
      );
      await sleep(500);
      const figures = summary(tally);
      console.info(`redis proxy cuts: ${JSON.stringify({ cuts, ...figures })}`);
      expect(figures.lost).toBe(0);
      expect(figures.confirmed).toBeGreaterThan(9_000);
    } finally {
      await consumer.close();
      await publisher.close();
      await proxy.close();
      await admin.del(`busbar:{${topic}}`, `busbar:{${topic}}:retry:${group}`);
      admin.disconnect();
    }
  });

  it.runIf(installed(REDIS_SERVER))(
    'a private redis-server with AOF restarted mid-run: nothing lost',
    { timeout: 120_000 },
    async () => {
      const dir = tempDir('aof');
      const port = await freePort();
      const url = `redis://127.0.0.1:${port}`;
      const aof = ['--appendonly', 'yes', '--appendfsync', 'everysec'];
      let server = await startRedis(port, dir.path, aof);
      const topic = uniqueName('aof');
      const group = uniqueName('g');
      const tally: Tally = { confirmed: new Set(), failed: 0, received: new Map() };
      const options = {
        url,
        driver,
        logger: silentLogger,
        claimIdleMs: 5_000,
        claimIntervalMs: 500,
        publishTimeoutMs: 20_000,
      };
      const consumer = await connect(options);
      const publisher = await connect(options);
      try {
        await consumer.subscribe(
          topic,
          async (m) => {
            // Some failures so retries sit in the retry set across the restart; only successes are counted.
            if (m.attempt === 1 && Number((m.payload as { n: number }).n) % 50 === 0)
              throw new Error('first attempt fails');
            tally.received.set(m.id, (tally.received.get(m.id) ?? 0) + 1);
          },
          {
            group,
            concurrency: 8,
            handlerTimeoutMs: 2_000,
            retry: { maxAttempts: 5, initialDelayMs: 500, maxDelayMs: 1_000 },
          },
        );
        let restarted = false;
        await publishAll(publisher, topic, 3_000, 10, tally, async (done) => {
          if (!restarted && done >= 1_500) {
            restarted = true;
            await stopRedis(server);
            server = await startRedis(port, dir.path, aof);
          }
          if (done % 100 === 0) await sleep(5);
        });
        expect(restarted).toBe(true);
        await waitFor(
          () => [...tally.confirmed].every((id) => tally.received.has(id)),
          60_000,
          'every confirmed message',
        );
        const figures = summary(tally);
        console.info(`redis AOF restart: ${JSON.stringify(figures)}`);
        expect(figures.lost).toBe(0);
        expect(figures.confirmed).toBe(3_000);
      } finally {
        await consumer.close();
        await publisher.close();
        await stopRedis(server);
        dir.remove();
      }
    },
  );
});
