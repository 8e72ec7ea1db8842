import { connect, silentLogger } from '@busbar/core';
import { driver } from '@busbar/redis';
import { brokerAvailable, brokerUrls } from '@busbar/testing';
import { describe } from 'vitest';
import { counterTests, lagTests } from './counters-suite.js';

const ok = await brokerAvailable('redis');
const open = () => connect({ url: brokerUrls.redis, driver, logger: silentLogger });

describe.runIf(ok)('prometheus counters and lag on redis', () => {
  counterTests(open, 30_000);
  lagTests(open, 30_000);
});
