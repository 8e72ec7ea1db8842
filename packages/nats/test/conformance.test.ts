import { connect, silentLogger } from '@busbar/core';
import { brokerAvailable, brokerUrls, describeConformance } from '@busbar/testing';
import { describe } from 'vitest';
import { driver } from '../src/index.js';

const ok = await brokerAvailable('nats');
/** The conformance suite's canary password (not exported from @busbar/testing's entry point). */
const CANARY = 'busbar-canary-secret';

describe.runIf(ok)('nats', () => {
  describeConformance('nats', {
    // Test streams expire after an hour so the shared server does not keep them forever.
    // A message the server hands to a closing member's last pull request is dropped with its inbox and comes
    // back after the ack wait (README, "close."); 10 s keeps that path inside the lifecycle tests' time budget.
    connect: (overrides) =>
      connect({
        url: brokerUrls.nats,
        driver,
        logger: silentLogger,
        maxAgeMs: 3_600_000,
        ackWaitMs: 10_000,
        ...overrides,
      }),
    capabilities: {
      durableGroups: true,
      persistent: true,
      ordering: true,
      wildcards: true,
      nativeDelay: true,
      replay: false,
    },
    // Nothing listens on port 1: the connection fails without the password ever being shown.
    badCredentialsUrl: `nats://busbar:${CANARY}@127.0.0.1:1`,
  });
});
