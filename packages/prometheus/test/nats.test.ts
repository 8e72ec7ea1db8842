import { connect, silentLogger } from '@busbar/core';
import { driver } from '@busbar/nats';
import { brokerAvailable, brokerUrls } from '@busbar/testing';
import { describe } from 'vitest';
import { counterTests, lagTests } from './counters-suite.js';

const ok = await brokerAvailable('nats');
const open = () => connect({ url: brokerUrls.nats, driver, logger: silentLogger, maxAgeMs: 3_600_000 });

describe.runIf(ok)('prometheus counters and lag on nats', () => {
  counterTests(open, 30_000);
  lagTests(open, 30_000);
});
