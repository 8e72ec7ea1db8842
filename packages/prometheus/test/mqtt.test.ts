import { connect, silentLogger } from '@busbar/core';
import { driver } from '@busbar/mqtt';
import { brokerAvailable, brokerUrls } from '@busbar/testing';
import { describe } from 'vitest';
import { counterTests } from './counters-suite.js';

const ok = await brokerAvailable('mqtt');

describe.runIf(ok)('prometheus counters on mqtt', () => {
  counterTests(() => connect({ url: brokerUrls.mqtt, driver, logger: silentLogger }), 30_000);
});
