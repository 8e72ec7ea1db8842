import { connect, silentLogger } from '@busbar/core';
import { driver } from '@busbar/redis';
import { brokerAvailable, brokerUrls } from '@busbar/testing';
import { describe } from 'vitest';
import { tracingTests, useTracing } from './tracing-suite.js';

const ok = await brokerAvailable('redis');

describe.runIf(ok)('tracing on redis', () => {
  const harness = useTracing();
  tracingTests('redis', harness, () => connect({ url: brokerUrls.redis, driver, logger: silentLogger }), 30_000);
});
