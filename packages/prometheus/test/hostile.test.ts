import { createServer } from 'node:http';
import { type AddressInfo, type Socket, connect as tcp } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { BusbarError, connect, type Health, silentLogger } from '@busbar/core';
import { uniqueName, waitFor, watchUncaught } from '@busbar/testing';
import { Registry } from 'prom-client';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { healthHandler, type LagSource, OTHER_TOPIC, registerBusbarMetrics, serveMetrics } from '../src/index.js';
import { parseExposition, total } from './exposition.js';

/** A request listener or event that throws is an uncaught exception: in production, a crash. There must be none. */
let uncaught: ReturnType<typeof watchUncaught>;
beforeEach(() => {
  uncaught = watchUncaught();
});
afterEach(() => {
  uncaught.stop();
  expect(uncaught.errors.map(String)).toEqual([]);
});

const broken = {
  health: (): Health => {
    throw new Error('health source broke');
  },
};

describe('lag sources returning malformed readings', () => {
  it('cost only their own readings, not the scrape', async () => {
    const registry = new Registry();
    const metrics = registerBusbarMetrics({ registry });
    const bad: unknown[] = [
      [{ topic: 'strings', group: 'g', lag: '12' }],
      undefined,
      [null],
      'not an array',
      [{ topic: 'nan', group: 'g', lag: Number.NaN, pending: -1, backlog: Number.POSITIVE_INFINITY }],
      [{ topic: 42, lag: 1 }],
    ];
    for (const value of bad) metrics.addLagSource((() => value) as unknown as LagSource);
    metrics.addLagSource(() => [
      { topic: 'good', group: 'g', lag: 3, pending: '2' as unknown as number },
      { topic: 'big', group: 'g', lag: 7n as unknown as number },
      { topic: 'odd "q" \\ \n', group: 'g', lag: 1 },
    ]);
    try {
      const samples = parseExposition(await registry.metrics());
      expect(total(samples, 'busbar_consumer_lag', { topic: 'good', group: 'g' })).toBe(3);
      expect(total(samples, 'busbar_consumer_lag', { topic: 'big', group: 'g' })).toBe(7);
      expect(total(samples, 'busbar_consumer_lag', { topic: 'odd "q" \\ \n', group: 'g' })).toBe(1);
      const lagged = samples.filter((s) => s.name.startsWith('busbar_consumer_') || s.name === 'busbar_topic_backlog');
      expect(lagged.map((s) => s.labels.topic).sort()).toEqual(['big', 'good', 'odd "q" \\ \n']);
    } finally {
      metrics.unregister();
    }
  });

  it('a lagTimeoutMs node would run after 1 ms (NaN, Infinity, over 2^31-1) is a ConfigError', () => {
    for (const lagTimeoutMs of [Number.NaN, Number.POSITIVE_INFINITY, 2 ** 31, -1]) {
      const registry = new Registry();
      let error: unknown;
      try {
        registerBusbarMetrics({ registry, lagTimeoutMs }).unregister();
      } catch (e) {
        error = e;
      }
      expect(BusbarError.is(error, 'BUSBAR_CONFIG'), String(lagTimeoutMs)).toBe(true);
      expect(registry.getMetricsAsArray()).toHaveLength(0);
    }
  });
});

describe('topic label cardinality', () => {
  it('is capped at maxTopics: messages on further topics count under (other)', async () => {
    const registry = new Registry();
    const metrics = registerBusbarMetrics({ registry, maxTopics: 3 });
    const bus = await connect({ url: `memory://${uniqueName('card')}`, logger: silentLogger });
    try {
      // A wildcard subscription over a topic per device: the label values come from the traffic.
      const prefix = uniqueName('dev');
      let handled = 0;
      await bus.subscribe(
        `${prefix}.*`,
        (m) => {
          handled++;
          if (m.topic.endsWith('.f')) throw new Error('poison');
        },
        { group: 'g', retry: false },
      );
      const devices = ['a', 'b', 'c', 'd', 'e', 'f'];
      for (const d of devices) await bus.publish(`${prefix}.${d}`, d);
      const read = async () => parseExposition(await registry.metrics());
      await waitFor(
        async () => total(await read(), 'busbar_messages_processed_total') === devices.length,
        5_000,
        'every settlement',
      );
      const samples = await read();
      const topics = (name: string) => new Set(samples.filter((s) => s.name === name).map((s) => s.labels.topic));
      for (const name of ['busbar_messages_published_total', 'busbar_messages_processed_total', 'busbar_in_flight']) {
        expect(topics(name).size, name).toBe(4);
        expect(topics(name).has(OTHER_TOPIC), name).toBe(true);
      }
      expect(handled).toBe(devices.length);
      expect(total(samples, 'busbar_messages_published_total', { topic: OTHER_TOPIC })).toBe(3);
      expect(total(samples, 'busbar_in_flight')).toBe(0);
      expect(total(samples, 'busbar_dead_letters_total', { topic: OTHER_TOPIC, dead_letter_topic: OTHER_TOPIC })).toBe(
        1,
      );
    } finally {
      metrics.unregister();
      await bus.close();
    }
    expect(() => registerBusbarMetrics({ registry, maxTopics: 0 })).toThrow(/maxTopics/);
    expect(registry.getMetricsAsArray()).toHaveLength(0);
  });
});

describe('a health source whose health() throws', () => {
  it('is answered 503 by serveMetrics and healthHandler, and the scrape still works', async () => {
    const registry = new Registry();
    const metrics = registerBusbarMetrics({ registry, buses: [broken] });
    const server = await serveMetrics({ port: 0, host: '127.0.0.1', registry, health: broken });
    const plain = createServer(healthHandler(broken, 'live'));
    await new Promise<void>((resolve) => plain.listen(0, '127.0.0.1', resolve));
    const signal = AbortSignal.timeout(5_000);
    try {
      expect((await fetch(`${server.url}/readyz`, { signal })).status).toBe(503);
      expect((await fetch(`${server.url}/livez`, { signal })).status).toBe(503);
      const { port } = plain.address() as AddressInfo;
      expect((await fetch(`http://127.0.0.1:${port}/livez`, { signal })).status).toBe(503);
      const res = await fetch(`${server.url}/metrics`, { signal });
      expect(res.status).toBe(200);
      expect(parseExposition(await res.text()).some((s) => s.name === 'busbar_subscription_queued')).toBe(false);
    } finally {
      plain.close();
      await server.close();
      metrics.unregister();
    }
  });
});

interface Client {
  readonly socket: Socket;
  /** Resolves when the server drops the connection. */
  readonly closed: Promise<void>;
}

const open = (port: number) =>
  new Promise<Client>((resolve, reject) => {
    const socket = tcp(port, '127.0.0.1', () => resolve({ socket, closed }));
    const closed = new Promise<void>((done) => socket.once('close', () => done()));
    socket.once('error', reject);
  });

const within = (promise: Promise<void>, ms: number): Promise<'closed' | 'open'> =>
  Promise.race([promise.then(() => 'closed' as const), sleep(ms).then(() => 'open' as const)]);

describe('the metrics server', () => {
  it('a port in use is a retryable ConfigError, a bad port a ConfigError', async () => {
    const first = await serveMetrics({ port: 0, host: '127.0.0.1', registry: new Registry() });
    try {
      const inUse = await serveMetrics({ port: first.port, host: '127.0.0.1', registry: new Registry() }).catch(
        (e: unknown) => e,
      );
      expect(BusbarError.is(inUse, 'BUSBAR_CONFIG'), String(inUse)).toBe(true);
      expect((inUse as BusbarError).retryable).toBe(true);
      expect((inUse as Error).message).toContain(String(first.port));
      for (const port of [70_000, -1, 1.5]) {
        const bad = await serveMetrics({ port, registry: new Registry() }).catch((e: unknown) => e);
        expect(BusbarError.is(bad, 'BUSBAR_CONFIG'), `${port}: ${String(bad)}`).toBe(true);
        expect((bad as BusbarError).retryable).toBe(false);
      }
    } finally {
      await first.close();
    }
  });

  it('drops connections over maxConnections', async () => {
    const server = await serveMetrics({ port: 0, host: '127.0.0.1', registry: new Registry(), maxConnections: 2 });
    const held = [await open(server.port), await open(server.port)];
    try {
      const extra = await open(server.port);
      expect(await within(extra.closed, 2_000)).toBe('closed');
      expect(await within(held[0]?.closed as Promise<void>, 100)).toBe('open');
      for (const { socket } of held) socket.destroy();
      // Room again once those are gone.
      await sleep(50);
      expect((await fetch(`${server.url}/metrics`, { signal: AbortSignal.timeout(5_000) })).status).toBe(200);
    } finally {
      for (const { socket } of held) socket.destroy();
      await server.close();
    }
  });

  it('drops a client that trickles its request headers', async () => {
    const server = await serveMetrics({ port: 0, host: '127.0.0.1', registry: new Registry(), requestTimeoutMs: 300 });
    const slow = await open(server.port);
    try {
      slow.socket.on('data', () => undefined);
      slow.socket.write('GET /metrics HTTP/1.1\r\nHost: x\r\n');
      expect(await within(slow.closed, 3_000)).toBe('closed');
    } finally {
      slow.socket.destroy();
      await server.close();
    }
  });

  it('survives a failed accept after it started listening, and close() may be called twice', async () => {
    const server = await serveMetrics({ port: 0, host: '127.0.0.1', registry: new Registry() });
    // What net.Server emits when accept() fails, e.g. when the process is out of file descriptors.
    server.server.emit('error', Object.assign(new Error('accept EMFILE'), { code: 'EMFILE', syscall: 'accept' }));
    expect((await fetch(`${server.url}/metrics`, { signal: AbortSignal.timeout(5_000) })).status).toBe(200);
    await server.close();
    await server.close();
    expect(server.server.listening).toBe(false);
  });
});
