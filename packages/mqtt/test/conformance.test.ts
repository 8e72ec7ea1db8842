import { connect, silentLogger } from '@busbar/core';
import { brokerAvailable, brokerUrls, describeConformance } from '@busbar/testing';

const CANARY = 'busbar-canary-secret';

import { describe } from 'vitest';
import { driver } from '../src/index.js';

const ok = await brokerAvailable('mqtt');

describe.runIf(ok)('mqtt', () => {
  describeConformance('mqtt', {
    connect: (overrides) => connect({ url: brokerUrls.mqtt, driver, logger: silentLogger, ...overrides }),
    capabilities: {
      durableGroups: true,
      persistent: true,
      ordering: false,
      wildcards: true,
      nativeDelay: false,
      replay: false,
    },
    // Mosquitto allows anonymous clients here: a closed port makes the connect fail.
    badCredentialsUrl: `mqtt://busbar:${CANARY}@127.0.0.1:1`,
  });
});
