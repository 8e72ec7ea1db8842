import { connect, silentLogger } from '@busbar/core';
import { driver } from '@busbar/redis';
import { brokerAvailable, brokerUrls, createFaultProxy, uniqueName, waitFor } from '@busbar/testing';
import { Registry } from 'prom-client';
import { describe, expect, it } from 'vitest';
import { readiness, registerBusbarMetrics } from '../src/index.js';
import { parseExposition, total } from './exposition.js';

const ok = await brokerAvailable('redis');

describe.runIf(ok)('reconnects and connection state on redis', () => {
  it('a cut connection counts a reconnect; connection_up and readiness recover', async () => {
    const target = new URL(brokerUrls.redis);
    const proxy = await createFaultProxy({ target: { host: target.hostname, port: Number(target.port || 6379) } });
    const registry = new Registry();
    const metrics = registerBusbarMetrics({ registry });
    const bus = await connect({ url: proxy.url(brokerUrls.redis), driver, logger: silentLogger });
    try {
      const read = async () => parseExposition(await registry.metrics());
      expect(readiness(bus).statusCode).toBe(200);
      const before = total(await read(), 'busbar_reconnects_total', { transport: 'redis' });
      proxy.cutAll();
      await waitFor(
        async () => total(await read(), 'busbar_reconnects_total', { transport: 'redis' }) > before,
        15_000,
        'a reconnect',
      );
      await waitFor(() => readiness(bus).ok, 20_000, 'readiness back');
      const samples = await read();
      const up = samples.filter((s) => s.name === 'busbar_connection_up' && s.labels.transport === 'redis');
      expect(up.length).toBeGreaterThan(0);
      expect(up.every((s) => s.value === 1)).toBe(true);
    } finally {
      metrics.unregister();
      await bus.close();
      await proxy.close();
    }
  });
  it('a publish the broker never confirms counts as status="error"', async () => {
    const target = new URL(brokerUrls.redis);
    const proxy = await createFaultProxy({ target: { host: target.hostname, port: Number(target.port || 6379) } });
    const registry = new Registry();
    const metrics = registerBusbarMetrics({ registry });
    const bus = await connect({
      url: proxy.url(brokerUrls.redis),
      driver,
      logger: silentLogger,
      publishTimeoutMs: 300,
    });
    try {
      const topic = uniqueName('fail');
      await bus.publish(topic, 'ok');
      proxy.blackhole(true);
      await expect(bus.publish(topic, 'lost')).rejects.toThrow();
      const samples = parseExposition(await registry.metrics());
      expect(total(samples, 'busbar_messages_published_total', { topic, status: 'success' })).toBe(1);
      expect(total(samples, 'busbar_messages_published_total', { topic, status: 'error' })).toBe(1);
      expect(total(samples, 'busbar_publish_duration_seconds_count', { topic, status: 'error' })).toBe(1);
    } finally {
      proxy.blackhole(false);
      metrics.unregister();
      await bus.close().catch(() => undefined);
      await proxy.close();
    }
  });
});
