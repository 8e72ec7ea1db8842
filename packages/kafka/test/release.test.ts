import { connect, silentLogger } from '@busbar/core';
import { brokerAvailable, brokerUrls, collect, sleep, uniqueName } from '@busbar/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { driver } from '../src/index.js';
import { Kafka, logLevel } from '../src/internals.js';

const ok = await brokerAvailable('kafka');

describe.runIf(ok)('kafka release', () => {
  const admin = new Kafka({ brokers: ['127.0.0.1:9092'], logLevel: logLevel.NOTHING }).admin();
  beforeAll(() => admin.connect());
  afterAll(() => admin.disconnect());

  it('a released record comes back alone, after a pause: later records already handled do not run again', async () => {
    const bus = await connect({ url: brokerUrls.kafka, driver, logger: silentLogger });
    try {
      const topic = uniqueName('release');
      const group = uniqueName('g');
      // One partition, so the released record and the later ones share it; the group's retry topic refuses
      // every write (records of at most 64 bytes), so the failing record's retry fails and core releases it.
      await admin.createTopics({
        waitForLeaders: true,
        topics: [
          { topic, numPartitions: 1 },
          {
            topic: `${topic}.${group}.retry`,
            numPartitions: 1,
            configEntries: [{ name: 'max.message.bytes', value: '64' }],
          },
        ],
      });
      const runs = collect<string>();
      await bus.subscribe<string>(
        topic,
        async (m) => {
          runs.push(m.payload);
          if (m.payload === 'fail') throw new Error('fails');
        },
        { group, concurrency: 4, retry: { maxAttempts: 5, initialDelayMs: 10, maxDelayMs: 10 } },
      );
      await bus.publishBatch(
        topic,
        ['fail', 'b', 'c', 'd'].map((payload) => ({ payload, key: payload })),
      );
      await runs.waitForCount(4, 20_000);
      await sleep(4_000);
      const count = (payload: string) => runs.items.filter((p) => p === payload).length;
      expect([count('b'), count('c'), count('d')]).toEqual([1, 1, 1]);
      // Released and delivered again, but with a pause in between, not in a hot loop.
      expect(count('fail')).toBeGreaterThanOrEqual(2);
      expect(count('fail')).toBeLessThan(8);
      // The subscription goes on.
      await bus.publish(topic, 'e', { key: 'e' });
      await sleep(1_500);
      expect(count('e')).toBe(1);
    } finally {
      await bus.close();
    }
  }, 40_000);
});
