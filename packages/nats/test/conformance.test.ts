import { connect, silentLogger } from '@busbar/core';
import { brokerAvailable, brokerUrls, describeConformance } from '@busbar/testing';
import { nanos, connect as natsConnect } from 'nats';
import { describe } from 'vitest';
import { driver, natsOptions, streamFor } from '../src/index.js';

const ok = await brokerAvailable('nats');
/** The conformance suite's canary password (not exported from @busbar/testing's entry point). */
const CANARY = 'busbar-canary-secret';
/** Test streams expire after an hour so the shared server does not keep them forever. */
const MAX_AGE_MS = 3_600_000;
/**
 * While writes are refused, the topic's stream takes no message over this many bytes (headers + body): the
 * suite's own messages are about 150 bytes, a dead letter with its error metadata (stack included) is well
 * over 600, so the server refuses the dead-letter write (10054, message size exceeds maximum) and nothing else.
 */
const REFUSE_ABOVE = 400;

/** Makes the stream that captures `topic` refuse its dead letters until the returned function is called. */
async function refuseWrites(topic: string): Promise<() => Promise<void>> {
  const nc = await natsConnect({ servers: new URL(brokerUrls.nats).host });
  try {
    const jsm = await nc.jetstreamManager();
    let name: string;
    try {
      name = await jsm.streams.find(topic);
    } catch {
      // Not created yet: create it as busbar would, so busbar finds and uses it.
      const target = streamFor(topic, natsOptions.parse({}));
      await jsm.streams.add({ name: target.name, subjects: [...target.subjects], max_age: nanos(MAX_AGE_MS) });
      name = target.name;
    }
    const { config } = await jsm.streams.info(name);
    const before = config.max_msg_size ?? -1;
    await jsm.streams.update(name, { ...config, max_msg_size: REFUSE_ABOVE });
    return async () => {
      try {
        const now = await jsm.streams.info(name);
        await jsm.streams.update(name, { ...now.config, max_msg_size: before });
      } finally {
        await nc.close();
      }
    };
  } catch (error) {
    await nc.close();
    throw error;
  }
}

describe.runIf(ok)('nats', () => {
  describeConformance('nats', {
    // A message the server hands to a closing member's last pull request is dropped with its inbox and comes
    // back after the ack wait (README, "close."); 10 s keeps that path inside the lifecycle tests' time budget.
    connect: (overrides) =>
      connect({
        url: brokerUrls.nats,
        driver,
        logger: silentLogger,
        maxAgeMs: MAX_AGE_MS,
        ackWaitMs: 10_000,
        ...overrides,
      }),
    proxyableUrl: brokerUrls.nats,
    wrongPeerUrl: (host, port) => `nats://${host}:${port}`,
    capabilities: {
      durableGroups: true,
      ordering: true,
      wildcards: true,
      requestReply: true,
    },
    // Nothing listens on port 1: the connection fails without the password ever being shown.
    badCredentialsUrl: `nats://busbar:${CANARY}@127.0.0.1:1`,
    refuseWrites,
  });
});
