import { codecs, connect, defineTopic, silentLogger } from '@busbar/core';
import { brokerAvailable, brokerUrls, collect, uniqueName } from '@busbar/testing';
import { Redis } from 'ioredis';
import { describe, expect, it } from 'vitest';
import { driver } from '../src/index.js';
import { streamKey } from '../src/keys.js';

const ok = await brokerAvailable('redis');

describe.runIf(ok)('redis: content types', () => {
  it('core decodes by the content type, the same on the first attempt and after a retry', async () => {
    const bus = await connect({ url: brokerUrls.redis, driver, logger: silentLogger });
    const raw = new Redis(brokerUrls.redis);
    try {
      const topic = uniqueName('ct');
      const group = uniqueName('g');
      const seen = collect<string>();
      await bus.subscribe(
        topic,
        async (m) => {
          const kind = m.payload instanceof Uint8Array ? 'bytes' : typeof m.payload;
          seen.push(`${String(m.headers.n)}:${m.attempt}:${kind}`);
          if (m.attempt === 1) throw new Error('once more');
        },
        { group, retry: { maxAttempts: 2, initialDelayMs: 10, maxDelayMs: 10 } },
      );
      // busbar's own publishes: the content type travels in `ct` unless it is JSON.
      const text = defineTopic(topic, undefined, { codec: { ...codecs.string, contentType: 'text/plain' } });
      await bus.publish(text, 'hello', { headers: { n: 'text' } });
      const octets = defineTopic(topic, undefined, { codec: codecs.bytes });
      await bus.publish(octets, new TextEncoder().encode('{"looks":"like json"}'), { headers: { n: 'bytes' } });
      await bus.publish(topic, { a: 1 }, { headers: { n: 'json' } });
      // Another producer's entry without busbar's `id` or a `ct`: JSON when it parses, else bytes.
      const key = streamKey('busbar:', topic);
      await raw.xadd(key, '*', 'body', '{"b":2}', 'h', '{"n":"foreign-json"}');
      await raw.xadd(key, '*', 'body', 'plain words', 'h', '{"n":"foreign-text"}', 'ct', 'text/plain');
      await seen.waitForCount(10, 10_000);
      expect([...seen.items].sort()).toEqual(
        [
          'text:1:string',
          'text:2:string',
          'bytes:1:bytes',
          'bytes:2:bytes',
          'json:1:object',
          'json:2:object',
          'foreign-json:1:object',
          'foreign-json:2:object',
          'foreign-text:1:string',
          'foreign-text:2:string',
        ].sort(),
      );
    } finally {
      raw.disconnect();
      await bus.close();
    }
  });
});
