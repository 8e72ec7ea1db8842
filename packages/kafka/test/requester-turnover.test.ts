import { type Bus, connect, silentLogger } from '@busbar/core';
import { brokerAvailable, brokerUrls, uniqueName, waitFor } from '@busbar/testing';
import { afterAll, describe, expect, it } from 'vitest';
import { driver } from '../src/index.js';
import { Kafka, logLevel } from '../src/internals.js';

const ok = await brokerAvailable('kafka');

describe.runIf(ok)('kafka request/reply as requesters come and go', () => {
  const kafka = new Kafka({ brokers: [new URL(brokerUrls.kafka).host], logLevel: logLevel.NOTHING });
  const buses: Bus[] = [];
  const open = async (name = uniqueName('turn')) => {
    const bus = await connect({ url: brokerUrls.kafka, driver, logger: silentLogger, name, maxWaitTimeMs: 100 });
    buses.push(bus);
    return bus;
  };
  afterAll(async () => {
    await Promise.all(buses.map((bus) => bus.close().catch(() => undefined)));
  });

  it("a new requester's first request is answered after an earlier requester closed and its reply topic went", async () => {
    const responder = await open();
    const topic = uniqueName('turn-echo');
    await responder.respond(topic, (m) => m.payload);
    const firstName = uniqueName('turn-a');
    const first = await open(firstName);
    expect(await first.request(topic, 1, { timeoutMs: 20_000 })).toBe(1);
    await first.close();
    const admin = kafka.admin();
    await admin.connect();
    try {
      await waitFor(
        async () => !(await admin.listTopics()).some((t) => t.startsWith(`${firstName}.replies.`)),
        20_000,
        "the first requester's reply topic deleted",
      );
    } finally {
      await admin.disconnect();
    }
    // The responder's producer had sent to the deleted reply topic: its next metadata refresh names it, and
    // the broker's "unknown topic" failed the reply to the new requester (the caller timed out).
    const second = await open();
    expect(await second.request(topic, 2, { timeoutMs: 8_000 })).toBe(2);
    expect(await second.request(topic, 3, { timeoutMs: 8_000 })).toBe(3);
  }, 90_000);
});
