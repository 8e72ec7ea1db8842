import { connect, silentLogger } from '@busbar/core';
import { brokerAvailable, brokerUrls, collect, describeConformance, uniqueName, waitFor } from '@busbar/testing';
import * as ioredis from 'ioredis';
import { afterAll, describe, expect, it, vi } from 'vitest';
import { driver } from '../src/index.js';
import { refuseWrites } from './refuse-writes.js';

/**
 * The driver with ioredis 6 (RESP3 by default) in place of the workspace's ioredis 5: every `import 'ioredis'`
 * of this file's module graph, the driver's sources included, gets the ioredis 6 install found here (set
 * BUSBAR_IOREDIS6 to its package folder; CI installs it into the cache, see the README). The real client
 * against the real Redis: only which installed version of the client loads is chosen.
 */
vi.mock('ioredis', async (importOriginal) => {
  const { existsSync } = await import('node:fs');
  const { createRequire } = await import('node:module');
  const { homedir } = await import('node:os');
  const { join } = await import('node:path');
  const cache = process.env.BUSBAR_CACHE ?? join(homedir(), '.cache', 'busbar');
  const candidates = [
    process.env.BUSBAR_IOREDIS6,
    join(cache, 'ioredis6', 'node_modules', 'ioredis'),
    '/tmp/ioredis6/node_modules/ioredis',
  ];
  const dir = candidates.find((d) => d !== undefined && d !== '' && existsSync(join(d, 'package.json')));
  if (dir === undefined) return { ...(await importOriginal<typeof import('ioredis')>()), LOADED_VERSION: undefined };
  const require = createRequire(join(dir, 'package.json'));
  const module = require(dir) as typeof import('ioredis');
  return {
    ...module,
    default: module.default,
    LOADED_VERSION: (require('./package.json') as { version: string }).version,
  };
});

const loaded = (ioredis as unknown as { LOADED_VERSION: string | undefined }).LOADED_VERSION;
const six = loaded?.startsWith('6.') === true;
const ok = await brokerAvailable('redis');
const host = new URL(brokerUrls.redis).host;

// Without ioredis 6 the file has nothing to test; CI must not pass it silently.
describe.runIf(process.env.CI === 'true')('redis with ioredis 6: installed', () => {
  it('finds ioredis 6 (BUSBAR_IOREDIS6 or the cache)', () => {
    expect(loaded).toMatch(/^6\./);
  });
});

describe.runIf(ok && six)('redis with ioredis 6 (RESP3 by default)', () => {
  const admin = new ioredis.Redis(brokerUrls.redis);
  afterAll(() => {
    admin.disconnect();
  });

  it('the driver runs on the ioredis 6 client, and RESP2 replies (what its parsers read) on its connections', async () => {
    // The class the driver constructs speaks RESP3 unless told otherwise: ioredis 6, not the workspace's 5.
    expect((ioredis.Redis as unknown as { defaultOptions: object }).defaultOptions).toMatchObject({ protocol: 3 });
    const bus = await connect({ url: brokerUrls.redis, driver, logger: silentLogger, name: 'resp-check' });
    try {
      const topic = uniqueName('resp');
      const got = collect<unknown>();
      await bus.subscribe(topic, async (m) => void got.push(m.payload), { group: 'g' });
      await bus.publish(topic, { n: 1 });
      await got.waitForCount(1, 5_000);
      // CLIENT LIST shows each connection's protocol (resp=2/3) from Redis 7.0 on.
      const clients = String(await admin.call('CLIENT', 'LIST'))
        .split('\n')
        .filter((line) => line.includes(' name=resp-check'));
      expect(clients.length).toBeGreaterThanOrEqual(2);
      for (const line of clients) expect(line).toContain(' resp=2');
      // XINFO GROUPS (lag) parsed too: the ack lands a moment after the handler returns.
      await waitFor(async () => (await bus.lag())[0]?.pending === 0, 5_000, 'acked');
      expect((await bus.lag())[0]).toMatchObject({ topic, group: 'g', lag: 0, backlog: 1 });
    } finally {
      await bus.close();
    }
  });

  describeConformance('redis (ioredis 6)', {
    connect: (overrides) => connect({ url: brokerUrls.redis, driver, logger: silentLogger, ...overrides }),
    capabilities: { durableGroups: true, ordering: true, wildcards: false, requestReply: true },
    badCredentialsUrl: `redis://busbar-canary-user:busbar-canary-secret@${host}`,
    refuseWrites: refuseWrites(() => new ioredis.Redis(brokerUrls.redis)),
  });
});
