import { BusbarError, type Message, PermanentError, silentLogger } from '@busbar/core';
import { brokerAvailable, brokerUrls, collect, createFaultProxy, uniqueName, waitFor } from '@busbar/testing';
import amqplib from 'amqplib';
import { describe, expect, it } from 'vitest';
import { rabbitmqOptions } from '../src/index.js';
import { RabbitMQTransport } from '../src/transport.js';
import { open, testOptions } from './helpers.js';
import { refuseWrites } from './refuse-writes.js';

const ok = await brokerAvailable('rabbitmq');
const target = new URL(brokerUrls.rabbitmq);

/** Another application publishing with plain amqplib to busbar's exchange (confirmed, so nothing is in flight after). */
async function foreign(work: (channel: amqplib.ConfirmChannel) => void): Promise<void> {
  const conn = await amqplib.connect(brokerUrls.rabbitmq);
  try {
    const channel = await conn.createConfirmChannel();
    work(channel);
    await channel.waitForConfirms();
  } finally {
    await conn.close().catch(() => undefined);
  }
}

describe.runIf(ok)('rabbitmq: oversized headers', () => {
  it('a 70,000-byte header value and many headers over the frame size fail typed; the bus still works', async () => {
    const bus = await open();
    try {
      const topic = uniqueName('big-headers');
      const group = uniqueName('g');
      const got = collect<string>();
      await bus.subscribe(topic, async (m) => void got.push(m.id), { group });
      const one = await bus.publish(topic, 1, { headers: { big: 'x'.repeat(70_000) } }).catch((e: unknown) => e);
      const many: Record<string, string> = {};
      for (let i = 0; i < 2_000; i++) many[`h${i}`] = 'y'.repeat(64);
      const lots = await bus.publish(topic, 2, { headers: many }).catch((e: unknown) => e);
      const batch = await bus.publishBatch(topic, [{ payload: 3, headers: many }]).catch((e: unknown) => e);
      for (const error of [one, lots, batch]) {
        expect(BusbarError.is(error)).toBe(true);
        expect(['BUSBAR_INVALID_HEADER', 'BUSBAR_PAYLOAD_TOO_LARGE']).toContain((error as BusbarError).code);
        expect((error as BusbarError).retryable).toBe(false);
      }
      // Just under the limit still goes through, and the channel was never broken.
      const fine = await bus.publish(topic, 4, { headers: { big: 'z'.repeat(30_000) } });
      const id = await bus.publish(topic, 5);
      await waitFor(() => got.items.includes(id) && got.items.includes(fine), 5_000, 'round trip after the refusals');
      expect(bus.health().status).toBe('up');
    } finally {
      await bus.close();
    }
  });
});

describe.runIf(ok)('rabbitmq: messages amqplib cannot encode (below core)', () => {
  it('fail their publish at once and typed; the publisher is not stuck behind them', async () => {
    // Only reachable below core's topic checks (core never passes such a name): the driver's own guard.
    const transport = new RabbitMQTransport({
      url: new URL(brokerUrls.rabbitmq),
      hosts: [target.host],
      options: rabbitmqOptions.parse(testOptions),
      bus: { name: 'robustness', connectTimeoutMs: 5_000, publishTimeoutMs: 5_000, closeTimeoutMs: 2_000 },
      secrets: [],
      logger: silentLogger,
      reportState: () => undefined,
    });
    await transport.connect();
    try {
      const record = (topic: string, headers: Record<string, string> = {}) => ({
        topic,
        id: uniqueName('id'),
        key: undefined,
        headers,
        body: Buffer.from('1'),
        contentType: 'application/json',
        timestamp: Date.now(),
      });
      const started = Date.now();
      // A routing key over AMQP's 255-byte short string: amqplib throws a TypeError while encoding.
      const error = await transport.publish([record(`x${'y'.repeat(300)}`)]).catch((e: unknown) => e);
      expect(BusbarError.is(error, 'BUSBAR_PUBLISH')).toBe(true);
      expect((error as BusbarError).retryable).toBe(false);
      // Headers over the table limit (core's own, smaller, portable limit is not in the way down here).
      const big = await transport.publish([record(uniqueName('big'), { big: 'x'.repeat(70_000) })]).catch((e) => e);
      expect(BusbarError.is(big, 'BUSBAR_INVALID_HEADER')).toBe(true);
      expect((big as BusbarError).retryable).toBe(false);
      await transport.publish([record(uniqueName('fine'), { big: 'x'.repeat(60_000) })]);
      expect(Date.now() - started).toBeLessThan(2_000);
    } finally {
      await transport.close();
    }
  });
});

describe.runIf(ok)('rabbitmq: refuseWrites (conformance helper) and dead letters', () => {
  it('a refused dead-letter topic fails the write typed, without a hot loop; after the restore it is written once', {
    timeout: 30_000,
  }, async () => {
    const bus = await open();
    try {
      const topic = uniqueName('refused');
      const group = uniqueName('g');
      const dlq = `${topic}.${group}.dlq`;
      let runs = 0;
      await bus.subscribe(
        topic,
        async () => {
          runs++;
          throw new PermanentError('no');
        },
        { group },
      );
      const restore = await refuseWrites(dlq);
      let restored = false;
      try {
        // The write itself is refused: publishing there directly fails typed too.
        const direct = await bus.publish(dlq, 'x').catch((e: unknown) => e);
        expect(BusbarError.is(direct)).toBe(true);
        await bus.publish(topic, 'fails');
        await waitFor(() => runs === 1, 5_000, 'the handler ran');
        await new Promise((r) => setTimeout(r, 1_500));
        expect(runs).toBe(1);
        await restore();
        restored = true;
      } finally {
        if (!restored) await restore();
      }
      const letters = collect<string>();
      await bus.subscribeDeadLetters(topic, group, async (m) => void letters.push(String(m.payload)));
      await letters.waitForCount(1, 20_000);
      await new Promise((r) => setTimeout(r, 500));
      expect(letters.items).toEqual(['fails']);
      expect(runs).toBe(1);
    } finally {
      await bus.close();
    }
  });
});

describe.runIf(ok)('rabbitmq: messages from a foreign amqplib producer', () => {
  it('decodes every AMQP header type, ignores an unusable message id and absurd numbers', async () => {
    const bus = await open();
    try {
      const topic = uniqueName('foreign');
      const group = uniqueName('g');
      const got = collect<Message<unknown>>();
      await bus.subscribe(topic, async (m) => void got.push(m), { group });
      const headers = {
        num: 42,
        float: 1.5,
        bool: true,
        arr: [1, 'a'],
        table: { a: 1 },
        buf: Buffer.from([0xff, 0xfe]),
        text: Buffer.from('hello'),
        nul: null,
        when: { '!': 'timestamp', value: 1_700_000_000 },
        'busbar-attempt': 'lots',
        'busbar-key': 7,
        'busbar-topic': '',
      };
      await foreign((channel) => {
        const publish = (n: number, props: Record<string, unknown>) =>
          channel.publish(testOptions.exchange, topic, Buffer.from(JSON.stringify(n)), {
            contentType: 'application/json',
            headers,
            ...props,
          });
        publish(1, { messageId: '' });
        publish(2, { messageId: 'bad\u0001id' });
        publish(3, { messageId: 'fine-id', timestamp: Number.MAX_SAFE_INTEGER });
        publish(4, { messageId: 'x'.repeat(250), timestamp: 2 ** 60 });
      });
      await got.waitForCount(4, 10_000);
      const byPayload = new Map(got.items.map((m) => [m.payload as number, m]));
      for (const m of got.items) {
        expect(Number.isFinite(m.timestamp.getTime())).toBe(true);
        expect(m.attempt).toBe(1);
        expect(m.topic).toBe(topic);
        expect(m.key).toBe('7');
        expect(m.headers).toMatchObject({
          num: '42',
          float: '1.5',
          bool: 'true',
          arr: '1, a',
          table: '{"a":1}',
          buf: Buffer.from([0xff, 0xfe]).toString('base64'),
          text: 'hello',
          nul: '',
        });
        expect(typeof m.headers.when).toBe('string');
        expect(m.headers.when).not.toBe('');
      }
      // Unusable ids count as absent: a random UUID instead.
      expect(byPayload.get(1)?.id).toMatch(/^[0-9a-f-]{36}$/);
      expect(byPayload.get(2)?.id).toMatch(/^[0-9a-f-]{36}$/);
      expect(byPayload.get(3)?.id).toBe('fine-id');
      expect(byPayload.get(4)?.id).toBe('x'.repeat(250));
      const id = await bus.publish(topic, 'after');
      await waitFor(() => got.items.some((m) => m.id === id), 5_000, 'round trip after the foreign messages');
    } finally {
      await bus.close();
    }
  });

  it('a wildcard group gets odd routing keys, retries them and dead-letters them without looping', {
    timeout: 30_000,
  }, async () => {
    const bus = await open();
    try {
      const base = uniqueName('odd');
      const group = uniqueName('g');
      const attempts = new Map<string, number>();
      await bus.subscribe(
        `${base}.#`,
        async (m) => {
          attempts.set(m.topic, (attempts.get(m.topic) ?? 0) + 1);
          throw new Error('always');
        },
        { group, retry: { maxAttempts: 3, initialDelayMs: 10, maxDelayMs: 20 } },
      );
      const keys = [`${base}.new item`, `${base}..x`, `${base}.${'k'.repeat(255 - base.length - 1)}`];
      await foreign((channel) => {
        for (const key of keys) channel.publish(testOptions.exchange, key, Buffer.from('"odd"'), { messageId: key });
      });
      await waitFor(() => keys.every((k) => attempts.get(k) === 3), 15_000, 'three attempts of each odd topic');
      // Dead-lettered after the third attempt: no fourth one comes.
      await new Promise((r) => setTimeout(r, 500));
      for (const key of keys) expect(attempts.get(key)).toBe(3);
      const stats = bus.health().subscriptions[0];
      expect(stats).toBeDefined();
      const id = await bus.publish(`${base}.plain`, 'after');
      await waitFor(() => attempts.get(`${base}.plain`) !== undefined, 5_000, `round trip after (${id})`);
    } finally {
      await bus.close();
    }
  });
});

describe.runIf(ok)('rabbitmq: close() while the broker is unreachable', () => {
  it('returns within closeTimeoutMs with subscriptions open', { timeout: 30_000 }, async () => {
    const proxy = await createFaultProxy({ target: { host: target.hostname, port: Number(target.port || 5672) } });
    const bus = await open({ closeTimeoutMs: 2_000, publishTimeoutMs: 10_000 }, proxy.url(brokerUrls.rabbitmq));
    try {
      const topic = uniqueName('down');
      const got = collect<string>();
      await bus.subscribe(topic, async (m) => void got.push(m.id), { group: uniqueName('g') });
      await bus.subscribe(topic, async (m) => void got.push(m.id));
      await bus.publish(topic, 'before');
      await got.waitForCount(2, 5_000);
      proxy.refuse(60_000);
      await waitFor(() => bus.health().status !== 'up', 5_000, 'the outage noticed');
      const started = Date.now();
      await bus.close();
      expect(Date.now() - started).toBeLessThan(2_500);
    } finally {
      await bus.close().catch(() => undefined);
      await proxy.close();
    }
  });

  it('returns within closeTimeoutMs when the broker stops answering (blackhole)', { timeout: 30_000 }, async () => {
    const proxy = await createFaultProxy({ target: { host: target.hostname, port: Number(target.port || 5672) } });
    const bus = await open({ closeTimeoutMs: 2_000, publishTimeoutMs: 10_000 }, proxy.url(brokerUrls.rabbitmq));
    try {
      const topic = uniqueName('silent');
      const got = collect<string>();
      await bus.subscribe(topic, async (m) => void got.push(m.id), { group: uniqueName('g') });
      await bus.publish(topic, 'before');
      await got.waitForCount(1, 5_000);
      proxy.blackhole(true);
      const started = Date.now();
      await bus.close();
      expect(Date.now() - started).toBeLessThan(2_500);
    } finally {
      await bus.close().catch(() => undefined);
      await proxy.close();
    }
  });
});
