import { connect, silentLogger } from '@busbar/core';
import { driver } from '@busbar/rabbitmq';
import { brokerAvailable, brokerUrls } from '@busbar/testing';
import { describe } from 'vitest';
import { tracingTests, useTracing } from './tracing-suite.js';

const ok = await brokerAvailable('rabbitmq');

describe.runIf(ok)('tracing on rabbitmq', () => {
  const harness = useTracing();
  tracingTests('rabbitmq', harness, () => connect({ url: brokerUrls.rabbitmq, driver, logger: silentLogger }), 30_000);
});
