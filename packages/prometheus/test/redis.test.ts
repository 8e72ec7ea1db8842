import { connect, silentLogger } from '@busbar/core';
import { driver } from '@busbar/redis';
import { brokerAvailable, brokerUrls } from '@busbar/testing';
import { describe } from 'vitest';
import { counterTests } from './counters-suite.js';

const ok = await brokerAvailable('redis');

describe.runIf(ok)('prometheus counters on redis', () => {
  counterTests(() => connect({ url: brokerUrls.redis, driver, logger: silentLogger }), 30_000);
});
