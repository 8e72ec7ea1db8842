import { connect, silentLogger } from '@busbar/core';
import { brokerAvailable, brokerUrls, describeConformance } from '@busbar/testing';
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
    settleMs: 300,
  });
});
