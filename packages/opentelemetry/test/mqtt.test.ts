import { connect, silentLogger } from '@busbar/core';
import { driver } from '@busbar/mqtt';
import { brokerAvailable, brokerUrls } from '@busbar/testing';
import { describe } from 'vitest';
import { tracingTests, useTracing } from './tracing-suite.js';

const ok = await brokerAvailable('mqtt');

describe.runIf(ok)('tracing on mqtt', () => {
  const harness = useTracing();
  tracingTests('mqtt', harness, () => connect({ url: brokerUrls.mqtt, driver, logger: silentLogger }), 30_000);
});
