import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { BusbarError, connect, silentLogger } from '@busbar/core';
import { uniqueName, waitFor } from '@busbar/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { driver } from '../src/index.js';
import { PrivateMosquitto, privateBrokerAvailable } from './helpers.js';

/** A private Mosquitto whose ACL refuses busbar's response topics: what a requester sees then. */
describe.runIf(privateBrokerAvailable())('mqtt request/reply: a broker that refuses the response topic', () => {
  const broker = new PrivateMosquitto();
  beforeAll(async () => {
    const acl = join(broker.dir, 'acl');
    writeFileSync(acl, ['topic readwrite #', 'topic deny busbar-reply/#', ''].join('\n'));
    await broker.start([`acl_file ${acl}`]);
  }, 10_000);
  afterAll(() => broker.destroy());

  it('requests time out (Mosquitto withholds the replies silently) and the bus still works', async () => {
    const bus = await connect({ url: broker.url, driver, logger: silentLogger, name: uniqueName('rr-acl') });
    try {
      const topic = uniqueName('rr.acl');
      let served = 0;
      await bus.respond(topic, (m) => {
        served++;
        return m.payload;
      });
      // Mosquitto 2.0 grants the SUBSCRIBE and applies `deny` when it delivers: the replies are withheld
      // silently, so the requester can only time out (typed, bounded, not retryable).
      for (const n of [1, 2]) {
        const t0 = Date.now();
        const error = await bus.request(topic, n, { timeoutMs: 500 }).catch((e: unknown) => e);
        expect(BusbarError.is(error, 'BUSBAR_TIMEOUT'), String(error)).toBe(true);
        expect((error as BusbarError).retryable).toBe(false);
        expect(Date.now() - t0).toBeLessThan(2_000);
      }
      expect(served).toBe(2);
      const events = uniqueName('rr.acl-events');
      const got: unknown[] = [];
      await bus.subscribe(events, (m) => void got.push(m.payload), { group: 'g' });
      await bus.publish(events, 'still');
      await waitFor(() => got.length === 1, 5_000, 'the event');
      expect(got).toEqual(['still']);
    } finally {
      await bus.close();
    }
  });
});
