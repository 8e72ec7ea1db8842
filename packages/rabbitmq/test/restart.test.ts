import { type Bus, connect, silentLogger } from '@busbar/core';
import { waitFor } from '@busbar/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { driver } from '../src/index.js';
import { canStartPrivateBroker, type PrivateBroker, startPrivateBroker } from './private-broker.js';

const ci = process.env.CI === 'true' || process.env.CI === '1';
if (!canStartPrivateBroker) {
  if (ci) throw new Error('rabbitmq-server is not installed: the app-restart test needs it to start a private node');
  console.warn('[busbar] skipping the RabbitMQ app-restart test: rabbitmq-server is not installed');
}

// A private node (temp dir, free ports): stopping its app cannot disturb the shared broker or other tests.
describe.runIf(canStartPrivateBroker)('rabbitmq app restart (rabbitmqctl stop_app / start_app)', () => {
  let broker: PrivateBroker;
  beforeAll(async () => {
    broker = await startPrivateBroker();
  }, 90_000);
  afterAll(async () => {
    await broker?.stop();
  }, 60_000);

  it('a durable group loses nothing and a live subscription resumes by itself', { timeout: 120_000 }, async () => {
    const open = (): Promise<Bus> =>
      connect({ url: broker.url, driver, logger: silentLogger, publishTimeoutMs: 5_000 });
    const consumer = await open();
    const publisher = await open();
    try {
      const topic = 'restart.orders';
      const live = new Set<string>();
      const durable = new Set<string>();
      const liveSub = await consumer.subscribe(topic, async (m) => void live.add(m.id), { group: 'live' });
      // The 'parked' group has no consumer while the broker restarts: its messages sit in the queue.
      const parked = await consumer.subscribe(topic, async (m) => void durable.add(m.id), { group: 'parked' });
      await parked.close();

      const before = await publisher.publishBatch(
        topic,
        Array.from({ length: 200 }, (_, n) => ({ payload: n })),
      );
      await waitFor(() => live.size >= 200, 20_000, 'live group before the restart');

      const states: string[] = [];
      await broker.restartApp(async () => {
        await waitFor(() => consumer.health().status !== 'up', 20_000, 'the restart noticed');
        states.push(consumer.health().status);
        // Publishing while the broker is down fails with a retryable error, never hangs.
        const error = await publisher.publish(topic, 'down').catch((e) => e);
        expect(error.retryable).toBe(true);
      });
      await waitFor(
        () => consumer.health().status === 'up' && publisher.health().status === 'up',
        30_000,
        'reconnected',
      );

      const after = await publisher.publishBatch(
        topic,
        Array.from({ length: 200 }, (_, n) => ({ payload: 200 + n })),
      );
      await waitFor(() => after.every((id) => live.has(id)), 30_000, 'live group after the restart');

      await consumer.subscribe(topic, async (m) => void durable.add(m.id), { group: 'parked' });
      await waitFor(
        () => before.every((id) => durable.has(id)) && after.every((id) => durable.has(id)),
        30_000,
        'parked group',
      );
      expect(states).toEqual(['reconnecting']);
      expect(before.filter((id) => !durable.has(id))).toEqual([]);
      await liveSub.close();
    } finally {
      await Promise.all([consumer.close(), publisher.close()]);
    }
  });
});
