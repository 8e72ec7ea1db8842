import { connect, silentLogger } from '@busbar/core';
import { driver } from '@busbar/nats';
import { brokerAvailable, brokerUrls } from '@busbar/testing';
import { describe } from 'vitest';
import { counterTests } from './counters-suite.js';

const ok = await brokerAvailable('nats');

describe.runIf(ok)('prometheus counters on nats', () => {
  counterTests(() => connect({ url: brokerUrls.nats, driver, logger: silentLogger, maxAgeMs: 3_600_000 }), 30_000);
});
