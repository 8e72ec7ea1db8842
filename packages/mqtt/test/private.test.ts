import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { BusbarError, connect, PermanentError, silentLogger } from '@busbar/core';
import { sleep, uniqueName, waitFor } from '@busbar/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { driver } from '../src/index.js';
import { publishPacketBytes } from '../src/properties.js';
import { PrivateMosquitto, privateBrokerAvailable } from './helpers.js';

describe.runIf(privateBrokerAvailable())('mqtt on a private mosquitto (ACL, websockets, restart)', () => {
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

  it('a publish the ACL refuses (PUBACK 0x87) fails typed and not retryable; the bus keeps working', async () => {
    const bus = await open(broker.url, uniqueName('acl'));
    try {
      const topic = `denied.${uniqueName('t')}`;
      const error = await bus.publish(`${topic}.g.dlq`, { n: 1 }).catch((e: unknown) => e);
      expect(BusbarError.is(error, 'BUSBAR_PUBLISH'), String(error)).toBe(true);
      expect((error as BusbarError).retryable).toBe(false);
      expect((error as Error).message).toContain('0x87');
      const got: number[] = [];
      await bus.subscribe<{ n: number }>(topic, async (m) => void got.push(m.payload.n), { group: 'g' });
      await bus.publish(topic, { n: 2 });
      await waitFor(() => got.length === 1, 5_000, 'the allowed message');
      expect(got).toEqual([2]);
    } finally {
      await bus.close();
    }
  });

  it('a dead letter the ACL refuses is not redelivered in a loop: the handler ran once', async () => {
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
      await waitFor(() => seen.length >= 1, 5_000, 'the first delivery');
      // Core retries only the refused dead-letter write, with backoff, through the driver's retry topic.
      await sleep(3_000);
      expect(seen).toEqual([id]);
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

  it("rejects a packet over the broker's Maximum Packet Size that core's byte count let through", async () => {
    const bus = await open(broker.url);
    try {
      const topic = `many.${uniqueName('t')}`;
      // 600 tiny properties: core counts 2,400 bytes of names, the packet spends 7 bytes on each.
      const headers = Object.fromEntries(Array.from({ length: 600 }, (_, i) => [`h${String(i).padStart(3, '0')}`, '']));
      const error = await bus.publish(topic, 'x'.repeat(3_000), { headers }).catch((e: unknown) => e);
      expect(BusbarError.is(error, 'BUSBAR_PAYLOAD_TOO_LARGE'), String(error)).toBe(true);
      expect((error as BusbarError).retryable).toBe(false);
      const got: string[] = [];
      await bus.subscribe<string>(topic, async (m) => void got.push(m.payload));
      await bus.publish(topic, 'small', { headers: { a: 'b' } });
      await waitFor(() => got.length === 1, 5_000, 'the small message');
      expect(got).toEqual(['small']);
    } finally {
      await bus.close();
    }
  });

  it('counts the packet exactly: one at the Maximum Packet Size goes through, one byte more is refused', async () => {
    const bus = await open(broker.url);
    try {
      const topic = `exact.${uniqueName('t')}`;
      const got: number[] = [];
      await bus.subscribe<string>(topic, async (m) => void got.push(m.payload.length));
      // Many empty properties: room the driver's lowered payload limit (max - 2 KiB) does not see.
      const headers = Object.fromEntries(Array.from({ length: 600 }, (_, i) => [`h${String(i).padStart(3, '0')}`, '']));
      const id = 'exact-id';
      const props = { ...headers, busbar: `${Date.now()} ${id}` };
      const size = (chars: number) =>
        publishPacketBytes(topic.replaceAll('.', '/'), 1, props, 'application/json', chars + 2);
      let chars = 0;
      while (size(chars) < 8_192) chars++;
      expect(size(chars)).toBe(8_192);
      await bus.publish(topic, 'x'.repeat(chars), { headers, id });
      const over = await bus.publish(topic, 'x'.repeat(chars + 1), { headers, id }).catch((e: unknown) => e);
      expect(BusbarError.is(over, 'BUSBAR_PAYLOAD_TOO_LARGE'), String(over)).toBe(true);
      await waitFor(() => got.length === 1, 5_000, 'the message at the limit');
      expect(got).toEqual([chars]);
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
