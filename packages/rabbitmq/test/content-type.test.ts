import { type Logger, MemoryIdempotencyStore, type Message, silentLogger } from '@busbar/core';
import { brokerAvailable, brokerUrls, collect, uniqueName } from '@busbar/testing';
import amqplib from 'amqplib';
import { describe, expect, it } from 'vitest';
import { open, testOptions } from './helpers.js';

const ok = await brokerAvailable('rabbitmq');

describe.runIf(ok)('rabbitmq: content type and made-up ids of foreign messages', () => {
  it('core decodes by the AMQP content type, the same on the first attempt and after a retry', async () => {
    const warnings: string[] = [];
    const logger: Logger = { ...silentLogger, warn: (message: string) => void warnings.push(message) };
    const bus = await open({ logger });
    try {
      const topic = uniqueName('ct');
      const group = uniqueName('g');
      const seen = collect<{ body: string; attempt: number; kind: string }>();
      await bus.subscribe(
        topic,
        async (m) => {
          const kind = m.payload instanceof Uint8Array ? 'bytes' : typeof m.payload;
          seen.push({ body: String(m.id), attempt: m.attempt, kind });
          if (m.attempt === 1) throw new Error('once more');
        },
        {
          group,
          retry: { maxAttempts: 2, initialDelayMs: 10, maxDelayMs: 10 },
          // With idempotency, core warns once when a driver had to make an id up.
          idempotency: { store: new MemoryIdempotencyStore() },
        },
      );
      const conn = await amqplib.connect(brokerUrls.rabbitmq);
      try {
        const channel = await conn.createConfirmChannel();
        const send = (id: string, body: string, contentType?: string) =>
          channel.publish(testOptions.exchange, topic, Buffer.from(body), {
            messageId: id,
            ...(contentType ? { contentType } : {}),
          });
        send('json-no-type', '{"a":1}');
        send('text', 'hello', 'text/plain');
        send('octets', 'raw', 'application/octet-stream');
        // No message id: the driver derives one and says so (idGenerated), core warns once.
        channel.publish(testOptions.exchange, topic, Buffer.from('{"b":2}'), {});
        await channel.waitForConfirms();
      } finally {
        await conn.close();
      }
      await seen.waitForCount(8, 10_000);
      const kinds = (id: string) => seen.items.filter((s) => s.body === id).map((s) => `${s.attempt}:${s.kind}`);
      expect(kinds('json-no-type')).toEqual(['1:object', '2:object']);
      expect(kinds('text')).toEqual(['1:string', '2:string']);
      expect(kinds('octets')).toEqual(['1:bytes', '2:bytes']);
      const derived = seen.items.find((s) => !['json-no-type', 'text', 'octets'].includes(s.body));
      expect(derived?.kind).toBe('object');
      expect(warnings.some((w) => /id/i.test(w))).toBe(true);
    } finally {
      await bus.close();
    }
  });

  it('a CloudEvent published in binary mode carries cloudEvents_ headers and reads back as one', async () => {
    const bus = await open();
    try {
      const topic = uniqueName('ce');
      const got = collect<Message<unknown>>();
      await bus.subscribe(topic, async (m) => void got.push(m), { group: uniqueName('g') });
      const id = await bus.publish(topic, { a: 1 }, { cloudEvent: { type: 'com.example.t', source: '/tests' } });
      await got.waitForCount(1, 5_000);
      const m = got.items[0] as Message<unknown>;
      expect(m.cloudEvent).toMatchObject({ id, type: 'com.example.t', source: '/tests', specversion: '1.0' });
      const headers = (m.raw as { properties: { headers: Record<string, unknown> } }).properties.headers;
      expect(headers.cloudEvents_type).toBe('com.example.t');
    } finally {
      await bus.close();
    }
  });
});
