import { connect, silentLogger } from '@busbar/core';
import { driver } from '@busbar/kafka';
import { brokerAvailable, brokerUrls } from '@busbar/testing';
import { describe } from 'vitest';
import { counterTests } from './counters-suite.js';

const ok = await brokerAvailable('kafka');

describe.runIf(ok)('prometheus counters on kafka', () => {
  counterTests(() => connect({ url: brokerUrls.kafka, driver, logger: silentLogger }), 30_000);
});
