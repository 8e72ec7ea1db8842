import { connect, silentLogger } from '@busbar/core';
import { brokerAvailable, brokerUrls, describeConformance } from '@busbar/testing';
import { describe } from 'vitest';
import { driver } from '../src/index.js';
import { testOptions } from './helpers.js';
import { refuseWrites } from './refuse-writes.js';

const ok = await brokerAvailable('rabbitmq');
const url = new URL(brokerUrls.rabbitmq);
// The conformance canary password (a wrong one): it must never show up in errors.
url.password = 'busbar-canary-secret';

describe.runIf(ok)('rabbitmq', () => {
  describeConformance('rabbitmq', {
    connect: (overrides) =>
      connect({ url: brokerUrls.rabbitmq, driver, logger: silentLogger, ...testOptions, ...overrides }),
    proxyableUrl: brokerUrls.rabbitmq,
    wrongPeerUrl: (host, port) => `amqp://${host}:${port}`,
    capabilities: {
      durableGroups: true,
      ordering: true,
      wildcards: true,
      requestReply: true,
    },
    badCredentialsUrl: url.toString(),
    refuseWrites,
  });
});
