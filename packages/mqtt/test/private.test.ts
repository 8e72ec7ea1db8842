import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { BusbarError, connect, PermanentError, silentLogger } from '@busbar/core';
import { sleep, uniqueName, waitFor } from '@busbar/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { driver } from '../src/index.js';
import { hasMosquitto, PrivateMosquitto } from './helpers.js';

describe.runIf(hasMosquitto)('mqtt on a private mosquitto (ACL, websockets, restart)', () => {
  const broker = new PrivateMosquitto();
  let wsPort = 0;
  beforeAll(async () => {
    wsPort = 20_000 + Math.floor(Math.random() * 20_000);
    const acl = join(broker.dir, 'acl');
    // Anonymous clients may do anything except touch the dead-letter topics of `denied.*` topics.
    writeFileSync(acl, 'topic readwrite #\ntopic deny denied/+/+/dlq\n');
    await broker.start([
      'max_packet_size 8192',
      `acl_file ${acl}`,
      `listener ${wsPort} 127.0.0.1`,
      'protocol websockets',
    ]);
  }, 10_000);
  afterAll(() => broker.destroy());

  const open = (url: string, name?: string) =>
    connect({
      url,
      driver,
      logger: silentLogger,
      reconnectPeriodMs: 200,
      publishTimeoutMs: 5_000,
      ...(name ? { name } : {}),
    });

  it('a released message (its dead letter was refused) comes back to the running member', async () => {
    const bus = await open(broker.url, uniqueName('rel'));
    try {
      const topic = `denied.${uniqueName('t')}`;
      const seen: string[] = [];
      await bus.subscribe(
        topic,
        async (m) => {
          seen.push(m.id);
          throw new PermanentError('never works');
        },
        { group: 'g' },
      );
      const id = await bus.publish(topic, { n: 1 });
      // Dead-lettering fails (ACL), so core releases the message; the driver reconnects to get it back.
      await waitFor(() => seen.length >= 3, 15_000, 'three deliveries of the released message');
      expect(new Set(seen)).toEqual(new Set([id]));
    } finally {
      await bus.close();
    }
  });

  it('works over ws:// (Mosquitto websockets listener)', async () => {
    const bus = await open(`ws://127.0.0.1:${wsPort}`, uniqueName('ws'));
    try {
      const topic = `ws.${uniqueName('t')}`;
      const got: number[] = [];
      await bus.subscribe<{ n: number }>(topic, async (m) => void got.push(m.payload.n), { group: 'g' });
      await bus.publishBatch(topic, [{ payload: { n: 1 } }, { payload: { n: 2 } }]);
      await waitFor(() => got.length === 2, 5_000, 'two messages over websockets');
      expect(got.sort()).toEqual([1, 2]);
    } finally {
      await bus.close();
    }
  });

  it('dead letters written after a broker restart are kept (declared groups are declared again)', async () => {
    const name = uniqueName('dl');
    const bus = await open(broker.url, name);
    const topic = `dl.${uniqueName('t')}`;
    try {
      await bus.subscribe<{ n: number }>(
        topic,
        async () => {
          throw new PermanentError('bad');
        },
        { group: 'g' },
      );
      await bus.publish(topic, { n: 1 });
      await sleep(500);
      await broker.stop();
      await broker.start();
      await waitFor(() => bus.health().status === 'up', 10_000, 'reconnected');
      await sleep(300);
      await bus.publish(topic, { n: 2 });
      const dead: number[] = [];
      await bus.subscribeDeadLetters<{ n: number }>(
        topic,
        'g',
        async (m) => void dead.push((m.payload as { n: number }).n),
      );
      await waitFor(() => dead.length === 2, 10_000, 'both dead letters');
      expect(dead.sort()).toEqual([1, 2]);
    } finally {
      await bus.close();
    }
  });

  it("lowers the payload limit to the broker's Maximum Packet Size", async () => {
    const bus = await open(broker.url);
    try {
      const topic = `big.${uniqueName('t')}`;
      const error = await bus.publish(topic, 'x'.repeat(7_000)).catch((e: unknown) => e);
      expect(BusbarError.is(error, 'BUSBAR_PAYLOAD_TOO_LARGE'), String(error)).toBe(true);
      await bus.publish(topic, 'x'.repeat(5_000));
    } finally {
      await bus.close();
    }
  });

  it('fails over between the hosts of a multi-host URL', async () => {
    const bus = await open(`mqtt://127.0.0.1:1,127.0.0.1:${broker.port}`);
    try {
      const topic = `multi.${uniqueName('t')}`;
      const got: number[] = [];
      await bus.subscribe<number>(topic, async (m) => void got.push(m.payload));
      await bus.publish(topic, 7);
      await waitFor(() => got.length === 1, 5_000, 'the message');
      expect(got).toEqual([7]);
    } finally {
      await bus.close();
    }
  });
});
