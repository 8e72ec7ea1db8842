import { connect, silentLogger } from '@busbar/core';
import { driver } from '@busbar/mqtt';
import { brokerAvailable, brokerUrls } from '@busbar/testing';
import { describe } from 'vitest';
import { counterTests, noLagTests } from './counters-suite.js';

const ok = await brokerAvailable('mqtt');
const open = () => connect({ url: brokerUrls.mqtt, driver, logger: silentLogger });

describe.runIf(ok)('prometheus counters and lag on mqtt', () => {
  counterTests(open, 30_000);
  noLagTests(open, 30_000);
});
