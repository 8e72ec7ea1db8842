import { connect, silentLogger } from '@busbar/core';
import { driver } from '@busbar/kafka';
import { brokerAvailable, brokerUrls } from '@busbar/testing';
import { describe } from 'vitest';
import { counterTests, lagTests } from './counters-suite.js';

const ok = await brokerAvailable('kafka');
const open = () => connect({ url: brokerUrls.kafka, driver, logger: silentLogger });

describe.runIf(ok)('prometheus counters and lag on kafka', () => {
  counterTests(open, 30_000);
  lagTests(open, 30_000);
});
