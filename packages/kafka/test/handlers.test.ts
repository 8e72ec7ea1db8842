import { connect, silentLogger } from '@busbar/core';
import { HEADER } from '@busbar/core/transport';
import { brokerAvailable, brokerUrls, collect, uniqueName } from '@busbar/testing';
import { describe, expect, it } from 'vitest';
import { driver } from '../src/index.js';

const ok = await brokerAvailable('kafka');

describe.runIf(ok)('kafka consumers', () => {
  it('a handler running longer than the session timeout keeps its partitions (heartbeats go on)', async () => {
    const options = {
      url: brokerUrls.kafka,
      driver,
      logger: silentLogger,
      sessionTimeoutMs: 2_000,
      heartbeatIntervalMs: 300,
    };
    const [a, b] = await Promise.all([connect(options), connect(options)]);
    try {
      const topic = uniqueName('slow');
      const group = uniqueName('g');
      const runs = collect<string>();
      const handler = async (m: { id: string }) => {
        runs.push(m.id);
        await new Promise((resolve) => setTimeout(resolve, 5_000));
      };
      await a.subscribe(topic, handler, { group });
      await b.subscribe(topic, handler, { group });
      const ids = await a.publishBatch(topic, [
        { payload: 1, key: 'x' },
        { payload: 2, key: 'y' },
      ]);
      await runs.waitForCount(2, 20_000);
      await new Promise((resolve) => setTimeout(resolve, 6_000));
      // No member was dropped for silence, so nothing was handed to the other member a second time.
      expect(runs.items.sort()).toEqual([...ids].sort());
    } finally {
      await Promise.all([a.close(), b.close()]);
    }
  }, 60_000);

  it('gzip-compressed batches round-trip', async () => {
    const bus = await connect({ url: brokerUrls.kafka, driver, logger: silentLogger, compression: 'gzip' });
    try {
      const topic = uniqueName('gzip');
      const got = collect<string>();
      await bus.subscribe<string>(topic, async (m) => got.push(m.payload), { group: uniqueName('g') });
      await bus.publishBatch(
        topic,
        Array.from({ length: 50 }, (_, n) => ({ payload: `message ${n} `.repeat(20) })),
      );
      await got.waitForCount(50, 20_000);
      expect(new Set(got.items).size).toBe(50);
    } finally {
      await bus.close();
    }
  }, 30_000);

  it('a dead letter names the partition and offset of the first read, also after a retry', async () => {
    const bus = await connect({ url: brokerUrls.kafka, driver, logger: silentLogger });
    try {
      const topic = uniqueName('dlpos');
      const group = uniqueName('g');
      const reads = collect<{ topic: string; partition: number; offset: string }>();
      await bus.subscribe<{ n: number }>(
        topic,
        async (m) => {
          if (m.payload.n < 3) return;
          reads.push(m.raw as { topic: string; partition: number; offset: string });
          throw new Error('always');
        },
        { group, retry: { maxAttempts: 2, initialDelayMs: 10, maxDelayMs: 10 } },
      );
      // Same key, same partition: the failing message is at offset 3 there, its retry at 0 in the retry topic.
      await bus.publishBatch(
        topic,
        [0, 1, 2, 3].map((n) => ({ payload: { n }, key: 'k' })),
      );
      await reads.waitForCount(2, 20_000);
      expect(reads.items[0]?.offset).toBe('3');
      // The second read came from the group's retry topic.
      expect(reads.items[1]?.topic).not.toBe(topic);
      const dead = collect<Record<string, string>>();
      await bus.subscribeDeadLetters(topic, group, (m) => {
        const raw = m.raw as { headers: Record<string, Buffer> };
        dead.push(Object.fromEntries(Object.entries(raw.headers).map(([k, v]) => [k, v.toString()])));
      });
      await dead.waitForCount(1, 20_000);
      const first = reads.items[0];
      expect(dead.items[0]?.[HEADER.sourcePartition]).toBe(String(first?.partition));
      expect(dead.items[0]?.[HEADER.sourceOffset]).toBe(first?.offset);
      expect(dead.items[0]?.['busbar-dl-attempts']).toBe('2');
    } finally {
      await bus.close();
    }
  }, 60_000);
});
