import { BusbarError, connect, silentLogger } from '@busbar/core';
import { brokerAvailable, brokerUrls, uniqueName } from '@busbar/testing';
import { describe, expect, it } from 'vitest';
import { driver } from '../src/index.js';

const open = (url: string, options: Record<string, unknown> = {}) =>
  connect({ url, driver, logger: silentLogger, connectTimeoutMs: 2_000, ...options }).then(
    async (bus) => {
      await bus.close();
      return new Error('connected');
    },
    (error: unknown) => error,
  );

describe('redis+sentinel:// URLs, tls and waitReplicas options', () => {
  it('a sentinel URL without a master name is a ConfigError naming the form', async () => {
    const error = await open('redis+sentinel://127.0.0.1:26379');
    expect(BusbarError.is(error, 'BUSBAR_CONFIG')).toBe(true);
    expect((error as Error).message).toMatch(/redis\+sentinel:\/\/host:port\[,host:port\]\/<master name>/);
  });

  it('a sentinel URL with cluster, waitReplicas with a cluster, tls: false on rediss://: ConfigErrors', async () => {
    const cases: [string, Record<string, unknown>, RegExp][] = [
      ['redis+sentinel://127.0.0.1:26379/m', { cluster: true }, /cluster/],
      ['redis://127.0.0.1:6379', { cluster: true, waitReplicas: 1 }, /waitReplicas/],
      ['rediss://127.0.0.1:6380', { tls: false }, /tls/],
    ];
    for (const [url, options, text] of cases) {
      const error = await open(url, options);
      expect(BusbarError.is(error, 'BUSBAR_CONFIG')).toBe(true);
      expect((error as Error).message).toMatch(text);
    }
  });

  it('no sentinel reachable: a ConnectionError within connectTimeoutMs, without the sentinel password', async () => {
    const secret = 'Sentinel-Canary-Pw-3b7e';
    const started = Date.now();
    const error = await open('redis+sentinel://127.0.0.1:1,127.0.0.1:2/m', { sentinelPassword: secret });
    expect(Date.now() - started).toBeLessThan(10_000);
    expect(BusbarError.is(error, 'BUSBAR_CONNECTION')).toBe(true);
    expect((error as Error).message).toMatch(/sentinel/i);
    expect(JSON.stringify(error) + String(error) + String((error as Error).cause)).not.toContain(secret);
  });
});

describe.runIf(await brokerAvailable('redis'))('waitReplicas on the shared standalone Redis (no replica)', () => {
  it('no replica confirms within waitTimeoutMs: a retryable PublishError saying so; the entry is on the primary', async () => {
    const bus = await connect({
      url: brokerUrls.redis,
      driver,
      logger: silentLogger,
      waitReplicas: 1,
      waitTimeoutMs: 100,
    });
    try {
      const topic = uniqueName('wait');
      const started = Date.now();
      const error = await bus.publish(topic, { n: 1 }).catch((e: unknown) => e);
      expect(Date.now() - started).toBeLessThan(5_000);
      expect(BusbarError.is(error, 'BUSBAR_PUBLISH')).toBe(true);
      expect((error as BusbarError).retryable).toBe(true);
      expect((error as Error).message).toMatch(/Only 0 of 1 replica\(s\) confirmed/);
    } finally {
      await bus.close();
    }
  });
});
