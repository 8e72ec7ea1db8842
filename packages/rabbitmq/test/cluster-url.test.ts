import { connect, silentLogger } from '@busbar/core';
import { brokerAvailable, brokerUrls, collect, freePort, uniqueName } from '@busbar/testing';
import { describe, expect, it } from 'vitest';
import { driver } from '../src/index.js';
import { testOptions } from './helpers.js';

const ok = await brokerAvailable('rabbitmq');

describe.runIf(ok)('rabbitmq cluster URL (a list of nodes)', () => {
  it('a node that refuses connections is skipped: the bus connects to the next one and works', async () => {
    const target = new URL(brokerUrls.rabbitmq);
    const dead = `127.0.0.1:${await freePort()}`;
    const url = `amqp://${target.username}:${target.password}@${dead},${target.host}${target.pathname}`;
    const bus = await connect({ url, driver, logger: silentLogger, connectTimeoutMs: 10_000, ...testOptions });
    try {
      const topic = uniqueName('cluster-url');
      const got = collect<string>();
      await bus.subscribe(topic, async (m) => void got.push(m.id), { group: 'g' });
      const id = await bus.publish(topic, 1);
      await got.waitForCount(1, 10_000);
      expect(got.items).toEqual([id]);
      expect(bus.health().status).toBe('up');
    } finally {
      await bus.close();
    }
  });

  it('when no node of the list answers, connect fails retryable within connectTimeoutMs', async () => {
    const url = `amqp://guest:guest@127.0.0.1:${await freePort()},127.0.0.1:${await freePort()}`;
    const started = Date.now();
    const error = await connect({ url, driver, logger: silentLogger, connectTimeoutMs: 1_500 }).then(
      () => undefined,
      (e: unknown) => e as { code?: string; retryable?: boolean },
    );
    expect(error?.code).toBe('BUSBAR_CONNECTION');
    expect(error?.retryable).toBe(true);
    expect(Date.now() - started).toBeLessThan(10_000);
  });
});
