import { connect, silentLogger } from '@busbar/core';
import { brokerAvailable, brokerUrls, describeConformance } from '@busbar/testing';
import { Redis } from 'ioredis';
import { describe } from 'vitest';
import { driver } from '../src/index.js';
import { refuseWrites } from './refuse-writes.js';

const ok = await brokerAvailable('redis');
const host = new URL(brokerUrls.redis).host;
// The canary the suite checks for (also `CANARY` in @busbar/testing's conformance module).
const CANARY = 'busbar-canary-secret';

describe.runIf(ok)('redis', () => {
  describeConformance('redis', {
    connect: (overrides) => connect({ url: brokerUrls.redis, driver, logger: silentLogger, ...overrides }),
    proxyableUrl: brokerUrls.redis,
    wrongPeerUrl: (host, port) => `redis://${host}:${port}`,
    capabilities: {
      durableGroups: true,
      ordering: true,
      wildcards: false,
      requestReply: true,
    },
    // The shared Redis has no password: an ACL user that does not exist makes AUTH fail.
    badCredentialsUrl: `redis://busbar-canary-user:${CANARY}@${host}`,
    refuseWrites: refuseWrites(() => new Redis(brokerUrls.redis)),
  });
});
