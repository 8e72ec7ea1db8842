import { connect, silentLogger } from '@busbar/core';
import { brokerAvailable, collect, describeConformance, uniqueName } from '@busbar/testing';
import { Cluster } from 'ioredis';
import { afterAll, describe, expect, it } from 'vitest';
import { driver, RedisIdempotencyStore } from '../src/index.js';
import { installed, type PrivateCluster, REDIS_CLI, REDIS_SERVER, startCluster } from './private-redis.js';
import { refuseWrites } from './refuse-writes.js';

// A private three-node Redis Cluster (redis-server + redis-cli --cluster create), when redis-server is installed.
const ok = (await brokerAvailable('redis')) && installed(REDIS_SERVER) && installed(REDIS_CLI);
const cluster: PrivateCluster | undefined = ok ? await startCluster() : undefined;
const [first, second] = cluster?.ports ?? [0, 0];

describe.runIf(ok)('redis cluster', () => {
  afterAll(async () => {
    await cluster?.stop();
  });
  const open = (overrides = {}) =>
    connect({
      url: `redis://127.0.0.1:${first}`,
      cluster: true,
      clusterNodes: [`127.0.0.1:${second}`],
      // No CLIENT UNBLOCK through a Cluster: a short block keeps close() quick.
      blockMs: 500,
      driver,
      logger: silentLogger,
      ...overrides,
    });

  describeConformance('redis cluster', {
    connect: open,
    capabilities: {
      durableGroups: true,
      ordering: true,
      wildcards: false,
      requestReply: true,
    },
    refuseWrites: refuseWrites(() => new Cluster([{ host: '127.0.0.1', port: first }])),
  });

  it('keeps every key of a topic in one slot (the {topic} hash tag), so retries run as one script', async () => {
    const bus = await open();
    const topic = uniqueName('tag');
    const group = uniqueName('g');
    const attempts = collect<number>();
    await bus.subscribe(
      topic,
      async (m) => {
        attempts.push(m.attempt);
        if (m.attempt < 2) throw new Error('once');
      },
      { group, retry: { maxAttempts: 3, initialDelayMs: 20 } },
    );
    await bus.publish(topic, { x: 1 });
    await attempts.waitForCount(2, 10_000);
    const admin = new Cluster([{ host: '127.0.0.1', port: first }]);
    const keys = [`busbar:{${topic}}`, `busbar:{${topic}}:retry:${group}`, `busbar:{${topic}}:delayed:${group}`];
    const slots = await Promise.all(keys.map((k) => admin.call('CLUSTER', 'KEYSLOT', k)));
    admin.disconnect();
    expect(new Set(slots).size).toBe(1);
    await bus.close();
  });

  it('the idempotency store works on a cluster', async () => {
    const store = new RedisIdempotencyStore({ url: `redis://127.0.0.1:${first}`, cluster: true });
    const key = uniqueName('k');
    expect(await store.claim(key, 5_000)).toBe('claimed');
    expect(await store.claim(key, 5_000)).toBe('busy');
    await store.complete(key, 5_000);
    expect(await store.claim(key, 5_000)).toBe('done');
    await store.close();
  });
});
