import { BusbarError, connect, silentLogger } from '@busbar/core';
import { brokerAvailable, brokerUrls, collect, uniqueName, waitFor } from '@busbar/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { driver } from '../src/index.js';
import { Kafka, logLevel } from '../src/internals.js';

const ok = await brokerAvailable('kafka');

describe.runIf(ok)('kafka publishes the broker refuses', () => {
  const kafka = new Kafka({ brokers: ['127.0.0.1:9092'], logLevel: logLevel.NOTHING });
  const admin = kafka.admin();

  beforeAll(() => admin.connect());
  afterAll(() => admin.disconnect());

  /** A topic whose records may be at most 64 bytes: the broker answers MESSAGE_TOO_LARGE. */
  async function tinyTopic(topic: string): Promise<void> {
    await admin.createTopics({
      waitForLeaders: true,
      topics: [{ topic, numPartitions: 1, configEntries: [{ name: 'max.message.bytes', value: '64' }] }],
    });
  }

  it('a refused record fails alone, typed, and leaves the producer sending (nothing dropped as a duplicate)', async () => {
    const bus = await connect({ url: brokerUrls.kafka, driver, logger: silentLogger });
    try {
      const tiny = uniqueName('tiny');
      const topic = uniqueName('normal');
      await tinyTopic(tiny);
      const got = collect<number>();
      await bus.subscribe<number>(topic, async (m) => got.push(m.payload), { group: uniqueName('g') });
      // Same tick: both go out in one produce request.
      const [normal, refused] = await Promise.allSettled([
        bus.publish(topic, 1, { key: 'k' }),
        bus.publish(tiny, 'x'.repeat(500)),
      ]);
      expect(normal.status).toBe('fulfilled');
      expect(refused.status).toBe('rejected');
      const error = (refused as PromiseRejectedResult).reason;
      expect(BusbarError.is(error, 'BUSBAR_PAYLOAD_TOO_LARGE')).toBe(true);
      expect((error as BusbarError).retryable).toBe(false);
      // One record to the same partition, as many records as the refused request wrote there.
      await bus.publish(topic, 2, { key: 'k' });
      // A duplicate of 1 is allowed (the split resend of what the broker had written), a loss is not.
      await waitFor(() => new Set(got.items).size === 2, 20_000, 'both records');
      expect([...new Set(got.items)].sort()).toEqual([1, 2]);
    } finally {
      await bus.close();
    }
  }, 40_000);

  it('a topic that cannot be created fails only its own publishes, typed; the others go out', async () => {
    const bus = await connect({ url: brokerUrls.kafka, driver, logger: silentLogger });
    try {
      const id = uniqueName('x').replaceAll('-', '_');
      // Kafka refuses 'collide.<id>' next to an existing 'collide_<id>' ('.' and '_' collide in metric names).
      await admin.createTopics({ waitForLeaders: true, topics: [{ topic: `collide_${id}`, numPartitions: 1 }] });
      const topic = uniqueName('fine');
      const got = collect<number>();
      await bus.subscribe<number>(topic, async (m) => got.push(m.payload), { group: uniqueName('g') });
      const [refused, fine] = await Promise.allSettled([bus.publish(`collide.${id}`, 0), bus.publish(topic, 1)]);
      expect(refused.status).toBe('rejected');
      const error = (refused as PromiseRejectedResult).reason as BusbarError;
      expect(BusbarError.is(error)).toBe(true);
      expect(error.retryable).toBe(false);
      expect(fine.status).toBe('fulfilled');
      await got.waitForCount(1, 20_000);
      // And again: the failed creation left nothing behind that fails the next publishes.
      const again = await Promise.allSettled([bus.publish(`collide.${id}`, 0), bus.publish(topic, 2)]);
      expect(again.map((r) => r.status)).toEqual(['rejected', 'fulfilled']);
      await got.waitForCount(2, 20_000);
    } finally {
      await bus.close();
    }
  }, 40_000);

  it('a dead-letter topic that refuses writes does not stop the dead letters of other subscriptions', async () => {
    const bus = await connect({ url: brokerUrls.kafka, driver, logger: silentLogger });
    try {
      const refusing = uniqueName('refusing');
      const refusingGroup = uniqueName('g');
      await tinyTopic(`${refusing}.${refusingGroup}.dlq`);
      const fail = async () => {
        throw new Error('always');
      };
      const options = { retry: { maxAttempts: 1 } } as const;
      await bus.subscribe(refusing, fail, { ...options, group: refusingGroup });
      const topic = uniqueName('failing');
      const group = uniqueName('g');
      await bus.subscribe(topic, fail, { ...options, group });
      const dead = collect<number>();
      await bus.subscribeDeadLetters<number>(topic, group, async (m) => dead.push(m.payload as number));
      for (let wave = 0; wave < 5; wave++) {
        await Promise.all([
          bus.publishBatch(
            refusing,
            Array.from({ length: 10 }, (_, n) => ({ payload: n, key: 'k' })),
          ),
          bus.publishBatch(
            topic,
            Array.from({ length: 20 }, (_, n) => ({ payload: wave * 20 + n, key: `k${n % 4}` })),
          ),
        ]);
      }
      await waitFor(() => new Set(dead.items).size === 100, 25_000, 'every dead letter').catch(() => undefined);
      expect(new Set(dead.items).size).toBe(100);
    } finally {
      await bus.close();
    }
  }, 60_000);
});
