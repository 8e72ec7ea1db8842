import { connect, silentLogger } from '@busbar/core';
import { driver } from '@busbar/rabbitmq';
import { brokerAvailable, brokerUrls } from '@busbar/testing';
import { describe } from 'vitest';
import { counterTests } from './counters-suite.js';

const ok = await brokerAvailable('rabbitmq');

describe.runIf(ok)('prometheus counters on rabbitmq', () => {
  counterTests(() => connect({ url: brokerUrls.rabbitmq, driver, logger: silentLogger }), 30_000);
});
