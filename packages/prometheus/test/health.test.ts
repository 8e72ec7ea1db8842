import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { connect, type Health, silentLogger } from '@busbar/core';
import { uniqueName } from '@busbar/testing';
import { Registry } from 'prom-client';
import { describe, expect, it } from 'vitest';
import { healthHandler, liveness, readiness, registerBusbarMetrics, serveMetrics } from '../src/index.js';
import { parseExposition, total } from './exposition.js';

const memory = () => connect({ url: `memory://${uniqueName('health')}`, logger: silentLogger });

function fakeBus(state: 'up' | 'reconnecting' | 'down', downForMs: number): { health(): Health } {
  return {
    health: () => ({
      status: state,
      transport: 'fake',
      connections: [{ name: 'main', state, since: new Date(Date.now() - downForMs) }],
      subscriptions: [],
    }),
  };
}

describe('health helpers', () => {
  it('readiness is 200 while the bus is up and its subscriptions run, 503 once it closes', async () => {
    const bus = await memory();
    await bus.subscribe(uniqueName('t'), () => undefined, { group: 'g' });
    const ready = readiness(bus);
    expect(ready.statusCode).toBe(200);
    expect(ready.body.status).toBe('ok');
    expect(ready.body.buses[0]?.subscriptions).toHaveLength(1);
    await bus.close();
    const closed = readiness(bus);
    expect(closed.statusCode).toBe(503);
    expect(closed.body.status).toBe('unavailable');
  });

  it('liveness tolerates a short outage but not a long one', () => {
    expect(liveness(fakeBus('reconnecting', 5_000)).statusCode).toBe(200);
    expect(readiness(fakeBus('reconnecting', 5_000)).statusCode).toBe(503);
    expect(liveness(fakeBus('down', 120_000)).statusCode).toBe(503);
    expect(liveness(fakeBus('down', 120_000), { maxDownMs: 300_000 }).statusCode).toBe(200);
    expect(liveness([fakeBus('up', 999_999), fakeBus('reconnecting', 90_000)]).ok).toBe(false);
  });

  it('healthHandler answers a plain http server with status and JSON', async () => {
    const bus = await memory();
    const server = createServer(healthHandler([bus, fakeBus('down', 1_000)], 'ready'));
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    try {
      const { port } = server.address() as AddressInfo;
      const res = await fetch(`http://127.0.0.1:${port}/readyz`);
      expect(res.status).toBe(503);
      expect(res.headers.get('content-type')).toContain('application/json');
      const body = (await res.json()) as { check: string; buses: { transport: string }[] };
      expect(body.check).toBe('ready');
      expect(body.buses.map((b) => b.transport)).toEqual(['memory', 'fake']);
    } finally {
      server.close();
      await bus.close();
    }
  });
});

describe('serveMetrics and lag', () => {
  it('serves /metrics, /readyz and /livez and reads lag sources at each scrape', async () => {
    const registry = new Registry();
    const metrics = registerBusbarMetrics({ registry, prefix: 'app_busbar_' });
    let lag = 7;
    metrics.addLagSource(() => [{ topic: 'orders', group: 'billing', lag, pending: 2, backlog: 40 }]);
    metrics.addLagSource(() => {
      throw new Error('broker admin API down');
    });
    // A bus that can tell its lag (the `bus.lag()` proposed for core) is read through watch().
    const lagBus = { ...fakeBus('up', 0), lag: async () => [{ topic: 'payments', group: 'ledger', lag: 3 }] };
    const unwatch = metrics.watch(lagBus);
    const bus = await memory();
    const server = await serveMetrics({ port: 0, host: '127.0.0.1', registry, health: bus });
    try {
      const res = await fetch(`${server.url}/metrics`);
      expect(res.status).toBe(200);
      expect(res.headers.get('content-type')).toContain('text/plain');
      let samples = parseExposition(await res.text());
      expect(total(samples, 'app_busbar_consumer_lag', { topic: 'orders', group: 'billing' })).toBe(7);
      expect(total(samples, 'app_busbar_consumer_pending', { topic: 'orders', group: 'billing' })).toBe(2);
      expect(total(samples, 'app_busbar_topic_backlog', { topic: 'orders' })).toBe(40);
      expect(total(samples, 'app_busbar_consumer_lag', { topic: 'payments', group: 'ledger' })).toBe(3);

      lag = 1;
      unwatch();
      samples = parseExposition(await (await fetch(`${server.url}/metrics`)).text());
      expect(total(samples, 'app_busbar_consumer_lag', { topic: 'orders' })).toBe(1);
      expect(samples.some((s) => s.labels.topic === 'payments')).toBe(false);

      expect((await fetch(`${server.url}/readyz`)).status).toBe(200);
      expect((await fetch(`${server.url}/livez`)).status).toBe(200);
      expect((await fetch(`${server.url}/nope`)).status).toBe(404);
      expect((await fetch(`${server.url}/metrics`, { method: 'POST' })).status).toBe(405);
    } finally {
      await server.close();
      metrics.unregister();
      await bus.close();
    }
    expect((await registry.metrics()).trim()).toBe('');
  });

  it('a slow lag source is cut off so a scrape stays fast', async () => {
    const registry = new Registry();
    const metrics = registerBusbarMetrics({ registry, lagTimeoutMs: 50 });
    metrics.addLagSource(() => new Promise(() => undefined));
    metrics.addLagSource(async () => [{ topic: 't', group: 'g', lag: 1 }]);
    try {
      const started = Date.now();
      const samples = parseExposition(await registry.metrics());
      expect(Date.now() - started).toBeLessThan(1_000);
      expect(total(samples, 'busbar_consumer_lag', { topic: 't' })).toBe(1);
    } finally {
      metrics.unregister();
    }
  });

  it('the subscription_queued gauge reads watched buses', async () => {
    const registry = new Registry();
    const bus = await memory();
    const metrics = registerBusbarMetrics({ registry, buses: [bus] });
    const topic = uniqueName('q');
    let release!: () => void;
    const gate = new Promise<void>((resolve) => {
      release = resolve;
    });
    try {
      await bus.subscribe(topic, () => gate, { group: 'g', concurrency: 1 });
      await bus.publishBatch(topic, [{ payload: 1 }, { payload: 2 }, { payload: 3 }]);
      await new Promise((resolve) => setTimeout(resolve, 50));
      const samples = parseExposition(await registry.metrics());
      expect(total(samples, 'busbar_in_flight', { topic, group: 'g' })).toBe(1);
      expect(total(samples, 'busbar_subscription_queued', { topic, group: 'g' })).toBe(2);
    } finally {
      release();
      metrics.unregister();
      await bus.close();
    }
  });
});
