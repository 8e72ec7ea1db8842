import { gzipSync } from 'node:zlib';
import { type Logger, MemoryIdempotencyStore, type Message, silentLogger } from '@busbar/core';
import { brokerAvailable, brokerUrls, collect, uniqueName, waitFor } from '@busbar/testing';
import amqplib from 'amqplib';
import { describe, expect, it } from 'vitest';
import { open, testOptions } from './helpers.js';

const ok = await brokerAvailable('rabbitmq');
const exchange = testOptions.exchange;

/** The RabbitMQ tutorials' publisher: basic.publish to an exchange with a routing key, confirmed. */
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

/** A raw consumer with its own exclusive queue bound to busbar's exchange for `topic`. */
async function rawConsumer(topic: string) {
  const conn = await amqplib.connect(brokerUrls.rabbitmq);
  const channel = await conn.createChannel();
  const { queue } = await channel.assertQueue('', { exclusive: true, autoDelete: true });
  await channel.bindQueue(queue, exchange, topic);
  const got = collect<amqplib.ConsumeMessage>();
  await channel.consume(queue, (m) => m && got.push(m), { noAck: true });
  return { got, close: () => conn.close().catch(() => undefined) };
}

describe.runIf(ok)('rabbitmq interop: a native amqplib producer', () => {
  it('reaches a busbar handler with its message_id, content type, timestamp, key and every header type', async () => {
    const bus = await open();
    try {
      const topic = uniqueName('tut');
      const got = collect<Message<unknown>>();
      await bus.subscribe(topic, async (m) => void got.push(m), { group: uniqueName('g') });
      await foreign((channel) => {
        channel.publish(exchange, topic, Buffer.from('{"order":7}'), {
          persistent: true,
          messageId: 'their-1',
          contentType: 'application/json',
          timestamp: 1_700_000_000,
          headers: {
            str: 'text',
            int: 42,
            long: { '!': 'int64', value: 2 ** 40 },
            double: 1.5,
            bool: false,
            bytes: Buffer.from([0xff, 0x00]),
            none: null,
            list: ['a', 2],
            table: { x: 'y' },
            when: { '!': 'timestamp', value: 1_700_000_000 },
            price: { '!': 'decimal', value: { places: 2, digits: 12_345 } },
            'busbar-key': 'k-9',
          },
        });
        channel.publish(exchange, topic, Buffer.from('plain words'), { persistent: true, contentType: 'text/plain' });
        // Nothing but a body that is not JSON: bytes, no content type, a made-up id.
        channel.publish(exchange, topic, Buffer.from('bare'), {});
      });
      await got.waitForCount(3, 5_000);
      const json = got.items.find((m) => m.id === 'their-1') as Message<unknown>;
      expect(json.payload).toEqual({ order: 7 });
      expect(json.contentType).toBe('application/json');
      expect(json.timestamp.getTime()).toBe(1_700_000_000_000);
      expect(json.key).toBe('k-9');
      expect(json.headers).toEqual({
        str: 'text',
        int: '42',
        long: String(2 ** 40),
        double: '1.5',
        bool: 'false',
        bytes: Buffer.from([0xff, 0x00]).toString('base64'),
        none: '',
        list: 'a, 2',
        table: '{"x":"y"}',
        when: '2023-11-14T22:13:20.000Z',
        price: '123.45',
      });
      const text = got.items.find((m) => m.payload === 'plain words') as Message<unknown>;
      expect(text.contentType).toBe('text/plain');
      const bare = got.items.find((m) => m.payload instanceof Uint8Array) as Message<unknown>;
      expect(Buffer.from(bare.payload as Uint8Array).toString()).toBe('bare');
      expect(bare.contentType).toBeUndefined();
      expect(bare.headers).toEqual({});
      expect(bare.id).not.toBe(text.id);
    } finally {
      await bus.close();
    }
  });

  it('two messages with equal bodies and no message_id are both handled under idempotency; one warning', async () => {
    const warnings: string[] = [];
    const logger: Logger = { ...silentLogger, warn: (message: string) => void warnings.push(message) };
    const bus = await open({ logger });
    try {
      const topic = uniqueName('noid');
      const got = collect<string>();
      await bus.subscribe(topic, async (m) => void got.push(m.id), {
        group: uniqueName('g'),
        idempotency: { store: new MemoryIdempotencyStore() },
      });
      await foreign((channel) => {
        for (let i = 0; i < 3; i++)
          channel.publish(exchange, topic, Buffer.from('{"same":true}'), { persistent: true });
      });
      await got.waitForCount(3, 5_000);
      await new Promise((r) => setTimeout(r, 200));
      expect(got.items).toHaveLength(3);
      expect(new Set(got.items).size).toBe(3);
      for (const id of got.items)
        expect(id).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
      expect(warnings.filter((w) => /carry no id/.test(w))).toHaveLength(1);
    } finally {
      await bus.close();
    }
  });

  it('an undecodable body is dead-lettered; a plain subscription on <topic>.<group>.dlq reads it as bytes', async () => {
    const bus = await open();
    try {
      const topic = uniqueName('bad');
      const group = uniqueName('g');
      const letters = collect<Message<unknown>>();
      let letterRuns = 0;
      await bus.subscribe(
        `${topic}.${group}.dlq`,
        async (m) => {
          letterRuns++;
          letters.push(m);
        },
        { group: uniqueName('reader') },
      );
      let runs = 0;
      await bus.subscribe(topic, async () => void runs++, { group });
      await foreign((channel) => {
        channel.publish(exchange, topic, Buffer.from('{not json'), {
          messageId: 'broken',
          contentType: 'application/json',
        });
      });
      await letters.waitForCount(1, 10_000);
      await new Promise((r) => setTimeout(r, 300));
      const letter = letters.items[0] as Message<unknown>;
      expect(runs).toBe(0);
      expect(letterRuns).toBe(1);
      expect(letter.payload).toBeInstanceOf(Uint8Array);
      expect(Buffer.from(letter.payload as Uint8Array).toString()).toBe('{not json');
      expect(letter.contentType).toBe('application/octet-stream');
      expect(letter.deadLetter?.errorName).toBe('DecodeError');
    } finally {
      await bus.close();
    }
  });

  it('content_encoding: gzip is decompressed; an unknown or broken encoding arrives as bytes, nothing crashes', async () => {
    const bus = await open();
    try {
      const topic = uniqueName('enc');
      const got = collect<Message<unknown>>();
      await bus.subscribe(
        topic,
        async (m) => {
          got.push(m);
          // A retry is the message as it came: still gzip'd with its encoding, read back decompressed.
          if (m.id === 'gzip' && m.attempt === 1) throw new Error('once more');
        },
        { group: uniqueName('g'), retry: { maxAttempts: 2, initialDelayMs: 10, maxDelayMs: 10 } },
      );
      await foreign((channel) => {
        const send = (id: string, body: Buffer, contentEncoding: string) =>
          channel.publish(exchange, topic, body, { messageId: id, contentType: 'application/json', contentEncoding });
        send('gzip', gzipSync('{"zipped":1}'), 'gzip');
        send('broken-gzip', Buffer.from('{"not":"gzip"}'), 'gzip');
        send('unknown', Buffer.from('ABC'), 'x-custom');
      });
      await got.waitForCount(4, 5_000);
      const by = (id: string) => got.items.find((m) => m.id === id) as Message<unknown>;
      const zipped = got.items.filter((m) => m.id === 'gzip');
      expect(zipped.map((m) => [m.attempt, m.payload, m.contentType])).toEqual([
        [1, { zipped: 1 }, 'application/json'],
        [2, { zipped: 1 }, 'application/json'],
      ]);
      expect(by('unknown').contentType).toBe('application/octet-stream');
      expect(Buffer.from(by('broken-gzip').payload as Uint8Array).toString()).toBe('{"not":"gzip"}');
      expect(Buffer.from(by('unknown').payload as Uint8Array).toString()).toBe('ABC');
      const id = await bus.publish(topic, 'after');
      await waitFor(() => got.items.some((m) => m.id === id), 5_000, 'round trip after encoded messages');
    } finally {
      await bus.close();
    }
  });
});

describe.runIf(ok)('rabbitmq interop: a native amqplib consumer reading busbar', () => {
  it('sees the body, message_id, content_type, timestamp, key and headers', async () => {
    const bus = await open();
    const topic = uniqueName('out');
    const consumer = await rawConsumer(topic);
    try {
      const before = Math.floor(Date.now() / 1000);
      const id = await bus.publish(topic, { total: 12 }, { key: 'cust-1', headers: { region: 'eu' } });
      await consumer.got.waitForCount(1, 5_000);
      const m = consumer.got.items[0] as amqplib.ConsumeMessage;
      expect(JSON.parse(m.content.toString())).toEqual({ total: 12 });
      expect(m.properties.messageId).toBe(id);
      expect(m.properties.contentType).toBe('application/json');
      expect(m.properties.deliveryMode).toBe(2);
      expect(m.properties.timestamp).toBeGreaterThanOrEqual(before);
      expect(m.properties.headers).toEqual({ region: 'eu', 'busbar-key': 'cust-1' });
      expect(m.fields.routingKey).toBe(topic);
    } finally {
      await consumer.close();
      await bus.close();
    }
  });
});

describe.runIf(ok)('rabbitmq interop: CloudEvents (AMQP binding)', () => {
  it('reads binary mode (cloudEvents_ and the older cloudEvents: prefix) and structured mode', async () => {
    const bus = await open();
    try {
      const topic = uniqueName('ce-in');
      const got = collect<Message<unknown>>();
      await bus.subscribe(topic, async (m) => void got.push(m), { group: uniqueName('g') });
      await foreign((channel) => {
        const attributes = (prefix: string, id: string) => ({
          [`${prefix}specversion`]: '1.0',
          [`${prefix}id`]: id,
          [`${prefix}type`]: 'com.example.order.created',
          [`${prefix}source`]: '/orders',
          [`${prefix}subject`]: 'o-1',
          [`${prefix}traceparent`]: '00-abc-def-01',
        });
        channel.publish(exchange, topic, Buffer.from('{"n":1}'), {
          contentType: 'application/json',
          headers: attributes('cloudEvents_', 'ce-binary'),
        });
        channel.publish(exchange, topic, Buffer.from('{"n":2}'), {
          contentType: 'application/json',
          headers: attributes('cloudEvents:', 'ce-old-prefix'),
        });
        const envelope = {
          specversion: '1.0',
          id: 'ce-structured',
          type: 'com.example.order.created',
          source: '/orders',
          datacontenttype: 'application/json',
          data: { n: 3 },
        };
        channel.publish(exchange, topic, Buffer.from(JSON.stringify(envelope)), {
          contentType: 'application/cloudevents+json; charset=utf-8',
        });
      });
      await got.waitForCount(3, 5_000);
      const by = (id: string) => got.items.find((m) => m.id === id) as Message<unknown>;
      for (const [id, n] of [
        ['ce-binary', 1],
        ['ce-old-prefix', 2],
        ['ce-structured', 3],
      ] as const) {
        const m = by(id);
        expect(m.payload).toEqual({ n });
        expect(m.cloudEvent).toMatchObject({ id, type: 'com.example.order.created', source: '/orders' });
      }
      expect(by('ce-binary').cloudEvent?.subject).toBe('o-1');
      expect(by('ce-binary').cloudEvent?.extensions).toEqual({ traceparent: '00-abc-def-01' });
      expect(by('ce-binary').cloudEvent?.datacontenttype).toBe('application/json');
    } finally {
      await bus.close();
    }
  });

  it('a busbar CloudEvent reaches a raw consumer with the binding headers and the native content type', async () => {
    const bus = await open();
    const topic = uniqueName('ce-out');
    const consumer = await rawConsumer(topic);
    try {
      const id = await bus.publish(
        topic,
        { n: 4 },
        { cloudEvent: { type: 'com.example.t', source: '/busbar', subject: 's-1' } },
      );
      await consumer.got.waitForCount(1, 5_000);
      const m = consumer.got.items[0] as amqplib.ConsumeMessage;
      const headers = m.properties.headers as Record<string, unknown>;
      expect(headers).toMatchObject({
        cloudEvents_specversion: '1.0',
        cloudEvents_id: id,
        cloudEvents_type: 'com.example.t',
        cloudEvents_source: '/busbar',
        cloudEvents_subject: 's-1',
      });
      expect(typeof headers.cloudEvents_time).toBe('string');
      expect(Number.isFinite(Date.parse(headers.cloudEvents_time as string))).toBe(true);
      // The binding: datacontenttype is the AMQP content-type property, not a header.
      expect(headers.cloudEvents_datacontenttype).toBeUndefined();
      expect(m.properties.contentType).toBe('application/json');
      expect(m.properties.messageId).toBe(id);
      expect(JSON.parse(m.content.toString())).toEqual({ n: 4 });
    } finally {
      await consumer.close();
      await bus.close();
    }
  });
});
