import { connect, silentLogger } from '@busbar/core';
import { driver } from '@busbar/kafka';
import { brokerAvailable, brokerUrls } from '@busbar/testing';
import { describe } from 'vitest';
import { tracingTests, useTracing } from './tracing-suite.js';

const ok = await brokerAvailable('kafka');

describe.runIf(ok)('tracing on kafka', () => {
  const harness = useTracing();
  tracingTests('kafka', harness, () => connect({ url: brokerUrls.kafka, driver, logger: silentLogger }), 30_000);
});
