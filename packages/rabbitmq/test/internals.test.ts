import { BusbarError } from '@busbar/core';
import { brokerAvailable, brokerUrls, freePort, uniqueName, waitFor } from '@busbar/testing';
import amqplib from 'amqplib';
import { describe, expect, it } from 'vitest';
import {
  byTag,
  checkAmqplibVersion,
  destroySocket,
  endpoints,
  frameMax,
  installedAmqplibVersion,
  TESTED_AMQPLIB_RANGE,
} from '../src/internals.js';

const ok = await brokerAvailable('rabbitmq');

describe('amqplib version check', () => {
  it('accepts the installed amqplib and the tested range', () => {
    expect(() => checkAmqplibVersion(installedAmqplibVersion())).not.toThrow();
    for (const version of ['2.3.1', '2.3.9', '2.4.0', '2.10.0'])
      expect(() => checkAmqplibVersion(version)).not.toThrow();
  });

  it('refuses an untested amqplib with a ConfigError naming the tested range', () => {
    for (const version of ['0.10.4', '1.0.0', '2.3.0', '3.0.0', 'unknown']) {
      let error: unknown;
      try {
        checkAmqplibVersion(version);
      } catch (e) {
        error = e;
      }
      expect(BusbarError.is(error, 'BUSBAR_CONFIG')).toBe(true);
      expect((error as Error).message).toContain(TESTED_AMQPLIB_RANGE);
      expect((error as Error).message).toContain(`amqplib ${version} is installed`);
    }
  });
});

describe.runIf(ok)('amqplib internals busbar relies on (real broker)', () => {
  it('connection.frameMax holds the negotiated frame_max', async () => {
    const conn = await amqplib.connect(`${brokerUrls.rabbitmq}?frameMax=65536`);
    try {
      expect(frameMax(conn)).toBe(65_536);
    } finally {
      await conn.close();
    }
  });

  it('destroying connection.stream closes the connection at once, without close-ok', async () => {
    const conn = await amqplib.connect(brokerUrls.rabbitmq);
    let closed = false;
    conn.on('error', () => undefined);
    conn.on('close', () => {
      closed = true;
    });
    destroySocket(conn);
    await waitFor(() => closed, 2_000, 'the close event after the socket was destroyed');
    await expect(conn.createChannel()).rejects.toThrow();
  });

  it('ack and nack by delivery tag alone settle the right messages (multiple too)', async () => {
    const queue = uniqueName('by-tag');
    const conn = await amqplib.connect(brokerUrls.rabbitmq);
    try {
      const channel = await conn.createChannel();
      await channel.assertQueue(queue, { exclusive: true });
      for (const n of [1, 2, 3, 4]) channel.sendToQueue(queue, Buffer.from(String(n)));
      const tags: number[] = [];
      const bodies: string[] = [];
      await channel.consume(queue, (m) => {
        if (!m) return;
        tags.push(m.fields.deliveryTag);
        bodies.push(m.content.toString());
      });
      await waitFor(() => tags.length === 4, 2_000, 'four deliveries');
      // 1 and 2 acked as one multiple ack by tag, 3 requeued by tag (it comes back redelivered), 4 acked alone.
      channel.ack(byTag(tags[1] as number), true);
      channel.nack(byTag(tags[2] as number), false, true);
      channel.ack(byTag(tags[3] as number), false);
      await waitFor(() => tags.length === 5, 2_000, 'the requeued message back');
      expect(bodies[4]).toBe('3');
      channel.ack(byTag(tags[4] as number), false);
      // Nothing is left unacked: closing the channel requeues nothing.
      await channel.close();
      const check = await conn.createChannel();
      expect((await check.checkQueue(queue)).messageCount).toBe(0);
    } finally {
      await conn.close().catch(() => undefined);
    }
  });
});

describe.runIf(ok)('amqplib recovery re-reads the URL object on every attempt (endpoints)', () => {
  it('a refused first node is skipped: the recovery connects to the next one of the list', async () => {
    const target = new URL(brokerUrls.rabbitmq);
    const dead = `127.0.0.1:${await freePort()}`;
    const nodes = endpoints(
      { protocol: 'amqp', username: 'guest', password: 'guest', vhost: '/' },
      [dead, target.host],
      5672,
    );
    const tried: string[] = [];
    const recovering = await amqplib.connect(nodes.options, {
      recovery: { initialDelay: 10, maxDelay: 50, maxRetries: 20, waitForConnect: false },
    });
    recovering.on('connect-failed', () => {
      tried.push(nodes.current);
      nodes.next();
    });
    try {
      await recovering.waitForConnect();
      expect(tried).toEqual([dead]);
      expect(nodes.current).toBe(target.host);
    } finally {
      await recovering.close();
    }
  });
});
