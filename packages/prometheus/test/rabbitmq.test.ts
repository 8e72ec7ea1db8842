import { connect, silentLogger } from '@busbar/core';
import { driver } from '@busbar/rabbitmq';
import { brokerAvailable, brokerUrls } from '@busbar/testing';
import { describe } from 'vitest';
import { counterTests, lagTests } from './counters-suite.js';

const ok = await brokerAvailable('rabbitmq');
// As the driver's tests (packages/rabbitmq/test/helpers.ts): the broker drops these queues when idle, so runs do not
// pile them up on the shared RabbitMQ (RabbitMQ 3.10 stops answering new connections at ~300 quorum queues with its
// default descriptor limit), on an exchange of their own (its retry and unroutable queues carry the same x-expires).
const open = () =>
  connect({ url: brokerUrls.rabbitmq, driver, logger: silentLogger, exchange: 'busbar-test', queueExpiresMs: 120_000 });

describe.runIf(ok)('prometheus counters and lag on rabbitmq', () => {
  counterTests(open, 30_000);
  lagTests(open, 30_000);
});
