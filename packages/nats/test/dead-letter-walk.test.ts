import { type Bus, connect, silentLogger } from '@busbar/core';
import { brokerAvailable, brokerUrls, uniqueName, waitFor } from '@busbar/testing';
import { afterAll, describe, expect, it } from 'vitest';
import { driver } from '../src/index.js';
import { cleanupStreams } from './helpers.js';

const ok = await brokerAvailable('nats');

/** Holds the event loop, as a GC pause or a starved CI machine does. */
function stall(ms: number): void {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    // busy
  }
}

/** The NATS driver, but the process stalls for `ms` right after every subscription starts. */
function stallingDriver(ms: number): typeof driver {
  return {
    ...driver,
    create(context) {
      const transport = driver.create(context);
      const subscribe = transport.subscribe.bind(transport);
      transport.subscribe = async (spec, callbacks) => {
        const sub = await subscribe(spec, callbacks);
        setImmediate(() => stall(ms));
        return sub;
      };
      return transport;
    },
  };
}

/** The NATS driver, but every publish takes `ms` longer while `slow.on` is set (a broker slow to confirm). */
function slowPublishDriver(ms: number, slow: { on: boolean }): typeof driver {
  return {
    ...driver,
    create(context) {
      const transport = driver.create(context);
      const publish = transport.publish.bind(transport);
      transport.publish = async (records) => {
        if (slow.on) await new Promise((resolve) => setTimeout(resolve, ms));
        return publish(records);
      };
      return transport;
    },
  };
}

/** Dead-letters `count` messages `{ n }` of `topic` in group 'g' and waits until all can be read back. */
async function deadLetter(bus: Bus, topic: string, count: number): Promise<void> {
  let failed = 0;
  const sub = await bus.subscribe(
    topic,
    () => {
      failed++;
      throw new Error('boom');
    },
    { group: 'g', retry: false },
  );
  for (let n = 0; n < count; n++) await bus.publish(topic, { n });
  await waitFor(() => failed >= count, 10_000);
  await sub.close();
  await waitFor(async () => (await bus.peekDeadLetters(topic, 'g', { idleMs: 1_000 })).length === count, 10_000);
}

describe.runIf(ok)('nats: dead-letter walks on a process that stalls', () => {
  const prefixes: string[] = [];
  afterAll(async () => {
    await cleanupStreams(prefixes);
  });

  // `busbar dlq list` on a loaded CI machine counted 4 of 5 dead letters: a walk ends when none came for idleMs,
  // and after a stall its idle timer ran before the dead letters already in the socket were read.
  it('a stall longer than idleMs right after the walk subscribed does not end it before the dead letters are read', async () => {
    const topic = uniqueName('walkstall');
    prefixes.push(topic);
    const bus = await connect({ url: brokerUrls.nats, driver, logger: silentLogger });
    const stalling = await connect({ url: brokerUrls.nats, driver: stallingDriver(400), logger: silentLogger });
    try {
      await deadLetter(bus, topic, 5);

      const seen = await stalling.peekDeadLetters(topic, 'g', { idleMs: 200 });
      expect(seen.map((m) => (m.payload as { n: number }).n).sort()).toEqual([0, 1, 2, 3, 4]);
    } finally {
      await stalling.close();
      await bus.close();
    }
  });

  // The CI run of the memory conformance suite re-drove 1 of 3: a walk counted a visit still waiting for its
  // re-publish's confirm as idle time, ended, and left the rest dead.
  it('a re-publish slower than idleMs does not end a re-drive: every dead letter moves', async () => {
    const topic = uniqueName('walkslow');
    prefixes.push(topic);
    const slow = { on: false };
    const bus = await connect({ url: brokerUrls.nats, driver: slowPublishDriver(400, slow), logger: silentLogger });
    try {
      await deadLetter(bus, topic, 3);

      slow.on = true;
      expect(await bus.redrive(topic, 'g', { idleMs: 200 })).toBe(3);
    } finally {
      await bus.close();
    }
  });
});
