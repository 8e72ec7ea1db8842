import { connect, silentLogger } from '@busbar/core';
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
});
