import { connect, silentLogger } from '@busbar/core';
import { brokerAvailable, brokerUrls, CANARY, describeConformance } from '@busbar/testing';
import { describe } from 'vitest';
import { driver } from '../src/index.js';

const ok = await brokerAvailable('kafka');

describe.runIf(ok)('kafka', () => {
  describeConformance('kafka', {
    connect: (overrides) => connect({ url: brokerUrls.kafka, driver, logger: silentLogger, ...overrides }),
    capabilities: {
      durableGroups: true,
      persistent: true,
      ordering: true,
      wildcards: false,
      nativeDelay: false,
      replay: false,
    },
    timeoutScale: 2,
    // subscribe() resolves once the group has joined and its start offsets are fixed: no settling needed.
    settleMs: 0,
    // No SASL on the test broker: a closed port, with the canary as password.
    badCredentialsUrl: `kafka://busbar:${CANARY}@127.0.0.1:1`,
  });
});
