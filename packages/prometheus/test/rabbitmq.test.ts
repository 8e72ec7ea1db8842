import { connect, silentLogger } from '@busbar/core';
import { driver } from '@busbar/rabbitmq';
import { brokerAvailable, brokerUrls } from '@busbar/testing';
import { describe } from 'vitest';
import { counterTests, lagTests } from './counters-suite.js';

const ok = await brokerAvailable('rabbitmq');
const open = () => connect({ url: brokerUrls.rabbitmq, driver, logger: silentLogger });

describe.runIf(ok)('prometheus counters and lag on rabbitmq', () => {
  counterTests(open, 30_000);
  lagTests(open, 30_000);
});
