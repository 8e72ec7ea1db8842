import { type Bus, connect, silentLogger } from '@busbar/core';
import { type FailoverResult, recordFailover, runFailover, uniqueName, waitFor } from '@busbar/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { driver } from '../src/index.js';
import { PrivateMosquitto, privateBrokerAvailable } from './helpers.js';

const BROKER = 'MQTT (Mosquitto, single node)';
/** Mosquitto writes its persistence file this often (seconds) and on a clean shutdown, never per message. */
const AUTOSAVE_S = 1;

/**
 * Mosquitto has no cluster: the fault is the one broker going away and coming back on the same port with the
 * same persistence file, while 10,000 confirmed publishes flow through a group (QoS 1, persistent sessions).
 */
describe.runIf(privateBrokerAvailable())('mqtt failover: Mosquitto has no cluster, one node restarted', () => {
  const broker = new PrivateMosquitto();
  beforeAll(() => broker.start([`autosave_interval ${AUTOSAVE_S}`]), 30_000);
  afterAll(() => broker.destroy());

  const open = (name: string): Promise<Bus> =>
    connect({
      url: broker.url,
      driver,
      logger: silentLogger,
      name,
      reconnectPeriodMs: 200,
      publishTimeoutMs: 10_000,
      connectTimeoutMs: 10_000,
    });

  /** Runs the workload; `confirmedAt` holds the time of every confirmed publish (for the bounds). */
  async function run(fault: (consumer: Bus) => Promise<void>, confirmedAt: number[]): Promise<FailoverResult> {
    const bus = await open(uniqueName('pub'));
    const publisher = new Proxy(bus, {
      get: (target, prop, receiver) =>
        prop === 'publish'
          ? async (...args: Parameters<Bus['publish']>) => {
              const id = await target.publish(...args);
              confirmedAt.push(Date.now());
              return id;
            }
          : Reflect.get(target, prop, receiver),
    });
    const consumer = await open(uniqueName('con'));
    try {
      return await runFailover({
        publisher,
        consumer,
        topic: `failover.${uniqueName('t')}`,
        group: uniqueName('g'),
        fault: () => fault(consumer),
        deliverWithinMs: 30_000,
      });
    } finally {
      await Promise.all([bus.close(), consumer.close()]);
    }
  }

  /**
   * Restarts the broker; returns the window from its start until the group's member is connected again (plus
   * 200 ms for its SUBSCRIBE). In that window Mosquitto 2.0.11 has no shared subscription (it does not restore
   * them): it answers PUBACK 0x10, which the publisher re-sends (resendUnmatchedMs), but it also confirmed with
   * PUBACK 0 some messages it never delivered (measured: 0-20 a run, the publisher's in-flight window re-sent
   * by mqtt.js right after the restart) - no client can see that.
   */
  async function restart(consumer: Bus, window: { from: number; to: number }): Promise<void> {
    await broker.start();
    window.from = Date.now();
    await waitFor(() => consumer.health().status === 'up', 20_000, 'the member back');
    window.to = Date.now() + 200;
  }

  const within = (times: number[], from: number, to: number) => times.filter((t) => t >= from && t <= to).length;

  it('broker SIGTERM + restart: the persistence file is written on shutdown', async () => {
    const confirmedAt: number[] = [];
    const gap = { from: 0, to: 0 };
    const result = await run(async (consumer) => {
      await broker.stop();
      await restart(consumer, gap);
    }, confirmedAt);
    const bound = within(confirmedAt, gap.from, gap.to);
    recordFailover(
      BROKER,
      'broker SIGTERM + restart',
      result,
      `QoS 1, persistent group sessions; Mosquitto saves on shutdown but restores no shared subscription: 0x10 answers are re-sent (resendUnmatchedMs), messages it confirmed before the member re-subscribed can still be lost (here: ${bound} confirmed in that gap)`,
    );
    expect(result.confirmed).toBe(10_000);
    expect(result.lost).toBeLessThanOrEqual(bound);
    // At least once: redeliveries are the messages processed whose PUBACK the stop cut off, at most the
    // member's prefetch (100) plus Mosquitto's in-flight window (20).
    expect(result.duplicated).toBeLessThanOrEqual(120);
  }, 150_000);

  it(`broker SIGKILL + restart (autosave_interval ${AUTOSAVE_S}): lost at most what was confirmed since the last save`, async () => {
    const confirmedAt: number[] = [];
    const gap = { from: 0, to: 0 };
    let killedAt = 0;
    const result = await run(async (consumer) => {
      killedAt = Date.now();
      await broker.kill();
      await restart(consumer, gap);
    }, confirmedAt);
    // PUBACK is not tied to disk: what Mosquitto confirmed after its last autosave and had not yet written to the
    // member's socket dies with it. The save runs once per interval, so the bound is the publishes confirmed in
    // the interval before the kill (plus 250 ms for the save's own timing).
    const since = killedAt - AUTOSAVE_S * 1_000 - 250;
    const bound = within(confirmedAt, since, killedAt) + within(confirmedAt, gap.from, gap.to);
    recordFailover(
      BROKER,
      'broker SIGKILL + restart',
      result,
      `QoS 1, persistent group sessions, autosave_interval ${AUTOSAVE_S} s: a crash loses what was confirmed since the last save and not yet sent to the member, plus the restart gap (bound here: ${bound})`,
    );
    expect(result.confirmed).toBe(10_000);
    expect(result.lost).toBeLessThanOrEqual(bound);
    // A crash restores the session as last saved: messages acked since then come again (at most one interval's).
    expect(result.duplicated).toBeLessThanOrEqual(bound + 120);
  }, 150_000);
});
