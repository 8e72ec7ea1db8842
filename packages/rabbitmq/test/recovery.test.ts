import { brokerAvailable, collect, uniqueName, waitFor } from '@busbar/testing';
import { afterAll, describe, expect, it } from 'vitest';
import { open, raw } from './helpers.js';

const ok = await brokerAvailable('rabbitmq');

// These tests delete queues under running consumers: classic queues only, since deleting and re-declaring
// quorum queues at once is what we suspect wedged RabbitMQ 3.10's Ra segment writer on the shared broker.
describe.runIf(ok)('rabbitmq channel-level recovery (connection stays up)', () => {
  const exchanges: string[] = [];
  afterAll(async () => {
    await raw(async (ch) => {
      for (const name of exchanges) await ch.deleteExchange(name).catch(() => undefined);
    }).catch(() => undefined);
  });

  it('a group queue deleted under a live subscription is declared again and consumption resumes', async () => {
    const exchange = uniqueName('xd');
    exchanges.push(exchange, `${exchange}.unroutable`);
    const bus = await open({ exchange, queueType: 'classic' });
    try {
      const topic = uniqueName('del');
      const group = uniqueName('g');
      const got = collect<number>();
      await bus.subscribe(topic, async (m) => void got.push(m.payload as number), { group });
      await bus.publish(topic, 1);
      await got.waitForCount(1, 5_000);
      await raw((ch) => ch.deleteQueue(`${topic}.${group}`));
      // The broker cancels the consumer; the driver re-creates channel, queue, binding and consumer.
      // A consumer on the queue means it was declared and bound again (the binding comes before the consume).
      await waitFor(
        async () =>
          ((await raw((ch) => ch.checkQueue(`${topic}.${group}`)).catch(() => undefined))?.consumerCount ?? 0) > 0,
        10_000,
        'the queue declared, bound and consumed again',
      );
      await bus.publish(topic, 2);
      await got.waitForCount(2, 10_000);
      expect(got.items).toEqual([1, 2]);
    } finally {
      await bus.close();
    }
  });

  it('a deleted retry queue is declared again; the retried message is not lost', async () => {
    const exchange = uniqueName('xr');
    exchanges.push(exchange, `${exchange}.unroutable`, `${exchange}.retry.50`);
    const bus = await open({ exchange, retryBuckets: [50], queueType: 'classic' });
    try {
      const topic = uniqueName('rq');
      const group = uniqueName('g');
      const attempts = collect<number>();
      await bus.subscribe(
        topic,
        async (m) => {
          attempts.push(m.attempt);
          if (m.attempt < 3) throw new Error('again');
        },
        { group, retry: { maxAttempts: 5, initialDelayMs: 10, maxDelayMs: 10 } },
      );
      await bus.publish(topic, 'x');
      await attempts.waitForCount(3, 10_000);
      // Remove the bucket behind the driver's back, then fail once more.
      await raw(async (ch) => {
        await ch.deleteExchange(`${exchange}.retry.50`);
        await ch.deleteQueue(`${exchange}.retry.50`);
      });
      await bus.publish(topic, 'y');
      await waitFor(
        () => attempts.items.filter((a) => a === 3).length >= 2,
        15_000,
        'the second message retried to attempt 3',
      );
    } finally {
      await bus.close();
    }
  });
});
