import { type Bus, connect, silentLogger } from '@busbar/core';
import { collect, createFaultProxy, type FaultProxy, uniqueName, waitFor } from '@busbar/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { driver } from '../src/index.js';
import { PrivateMosquitto, privateBrokerAvailable } from './helpers.js';

/**
 * Mosquitto 2.0 does not restore shared subscriptions after a restart: until a group member subscribes again,
 * it confirms publishes with PUBACK 0x10 (no matching subscribers) and drops them. Here the member is held off
 * (its proxy refuses connections) while the publisher is already back.
 */
describe.runIf(privateBrokerAvailable())('mqtt: a publisher back before the group after a broker restart', () => {
  const broker = new PrivateMosquitto();
  let proxy: FaultProxy;
  beforeAll(async () => {
    await broker.start();
    proxy = await createFaultProxy({ target: { host: '127.0.0.1', port: broker.port } });
  }, 30_000);
  afterAll(async () => {
    await proxy?.close();
    await broker.destroy();
  });

  const open = (url: string, extra: Record<string, unknown> = {}): Promise<Bus> =>
    connect({ url, driver, logger: silentLogger, name: uniqueName('b'), reconnectPeriodMs: 200, ...extra });

  async function publishWhileGroupIsAway(extra: Record<string, unknown>): Promise<{ got: string[]; id: string }> {
    const consumer = await open(proxy.url(broker.url));
    const publisher = await open(broker.url, extra);
    try {
      const topic = `restart.${uniqueName('t')}`;
      const got = collect<string>();
      await consumer.subscribe(topic, async (m) => void got.push(m.id), { group: 'g' });
      await broker.stop();
      proxy.refuse(2_500);
      await broker.start();
      await waitFor(() => publisher.health().status === 'up', 10_000, 'the publisher back');
      const id = await publisher.publish(topic, { n: 1 });
      await waitFor(() => consumer.health().status === 'up', 15_000, 'the member back');
      await waitFor(() => got.items.includes(id), 3_000, 'the message').catch(() => undefined);
      return { got: got.items, id };
    } finally {
      await Promise.all([consumer.close(), publisher.close()]);
    }
  }

  it('resends a message confirmed without a subscriber until the member subscribes again', async () => {
    const { got, id } = await publishWhileGroupIsAway({});
    expect(got).toEqual([id]);
  }, 60_000);

  it('with resendUnmatchedMs 0 the broker drops it (what the resend prevents)', async () => {
    const { got } = await publishWhileGroupIsAway({ resendUnmatchedMs: 0 });
    expect(got).toEqual([]);
  }, 60_000);
});
