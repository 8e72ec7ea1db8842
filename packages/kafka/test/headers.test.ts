import { connect, type Message, silentLogger } from '@busbar/core';
import { brokerAvailable, brokerUrls, collect, uniqueName } from '@busbar/testing';
import { describe, expect, it } from 'vitest';
import { driver } from '../src/index.js';
import { Kafka, logLevel } from '../src/internals.js';

const ok = await brokerAvailable('kafka');

/**
 * kafkajs cannot send a null header value (its size calculation calls Buffer.byteLength(null) before it
 * checks for null), though its encoder writes one as length -1 like the Java client. For the duration of
 * one send, let that size calculation count null as empty, so the record carries a real null header.
 */
async function withNullHeaders<T>(send: () => Promise<T>): Promise<T> {
  const original = Buffer.byteLength;
  Buffer.byteLength = ((value: Parameters<typeof original>[0], encoding?: BufferEncoding) =>
    value === null ? 0 : original(value, encoding)) as typeof original;
  try {
    return await send();
  } finally {
    Buffer.byteLength = original;
  }
}

describe.runIf(ok)('kafka headers from foreign producers', () => {
  it('null, binary, repeated, __proto__ and bad busbar headers arrive by the one rule, and consuming goes on', async () => {
    const bus = await connect({ url: brokerUrls.kafka, driver, logger: silentLogger });
    const kafka = new Kafka({ brokers: ['127.0.0.1:9092'], logLevel: logLevel.NOTHING });
    const producer = kafka.producer();
    try {
      const topic = uniqueName('foreign-headers');
      const got = collect<Message<unknown>>();
      await bus.subscribe(topic, async (m) => got.push(m), { group: uniqueName('g') });
      await producer.connect();
      const binary = Buffer.from([0xff, 0xfe, 0x00, 0x80]);
      await withNullHeaders(() =>
        producer.send({
          topic,
          messages: [
            {
              key: 'k',
              value: '{"n":1}',
              headers: {
                nul: null as unknown as string,
                bin: binary,
                rep: ['a', 'b'],
                mixed: ['x', null as unknown as string],
                ['__proto__']: 'p',
                constructor: 'c',
              },
            },
            {
              key: 'k',
              value: '{"n":2}',
              headers: { plain: 'yes', 'busbar-ts': 'not-a-number', 'busbar-attempt': 'NaN', 'busbar-id': '' },
            },
          ],
        }),
      );
      await got.waitForCount(2, 20_000);
      const [first, second] = got.items as [Message<unknown>, Message<unknown>];
      expect(first.payload).toEqual({ n: 1 });
      expect(Object.getPrototypeOf(first.headers)).toBe(Object.prototype);
      expect({ ...first.headers }).toEqual({
        nul: '',
        bin: binary.toString('base64'),
        rep: 'a, b',
        mixed: 'x, ',
        ['__proto__']: 'p',
        constructor: 'c',
      });
      expect(Object.hasOwn(first.headers, '__proto__')).toBe(true);
      expect(second.payload).toEqual({ n: 2 });
      expect(second.headers).toEqual({ plain: 'yes' });
      expect(second.attempt).toBe(1);
      expect(second.id).not.toBe('');
      expect(second.timestamp.getTime()).toBeGreaterThan(0);
      // The subscription is alive: a busbar publish still round-trips.
      await bus.publish(topic, { n: 3 }, { key: 'k' });
      await got.waitForCount(3, 20_000);
      expect(got.items[2]?.payload).toEqual({ n: 3 });
    } finally {
      await producer.disconnect().catch(() => undefined);
      await bus.close();
    }
  }, 40_000);
});
