import { type Bus, connect, type Logger, type Message, silentLogger } from '@busbar/core';
import { brokerAvailable, brokerUrls, collect, uniqueName, waitFor } from '@busbar/testing';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { driver } from '../src/index.js';
import { streamKey, topicKeys } from '../src/keys.js';

const ok = await brokerAvailable('redis');

/**
 * A logger that keeps every warning's error field (the read loop reports its failures there), as core's
 * redacting wrapper hands it to a console-style logger: `<class name>: <message>`.
 */
function capturing(): Logger & { readonly errors: string[] } {
  const errors: string[] = [];
  return {
    ...silentLogger,
    errors,
    warn(_message, fields) {
      if (fields?.error !== undefined) errors.push(String(fields.error));
    },
  };
}

/** What a handler saw of a message, comparable across the two read modes. */
const seen = (m: Message<unknown>) => ({ id: m.id, payload: m.payload, headers: m.headers, key: m.key });

describe.runIf(ok)('redis read modes: one reader, group (XREADGROUP) and broadcast (XREAD)', () => {
  const buses: Bus[] = [];
  let raw: Redis;
  const open = async (options: Record<string, unknown> = {}) => {
    const bus = await connect({ url: brokerUrls.redis, driver, logger: silentLogger, ...options });
    buses.push(bus);
    return bus;
  };
  beforeAll(() => {
    raw = new Redis(brokerUrls.redis);
  });
  afterAll(async () => {
    for (const bus of buses) await bus.close();
    raw.disconnect();
  });

  it('hands a raw XADD with odd fields to a group and to a broadcast subscriber alike', async () => {
    const bus = await open();
    const topic = uniqueName('odd');
    const group = collect<Message<unknown>>();
    const broadcast = collect<Message<unknown>>();
    await bus.subscribe(topic, async (m) => void group.push(m), { group: uniqueName('g') });
    await bus.subscribe(topic, async (m) => void broadcast.push(m));
    const key = streamKey('busbar:', topic);
    const odd: (string | Buffer)[][] = [
      ['a', '1', 'b', '2'],
      ['', 'nameless', 'body', '"x"'],
      [Buffer.from([0xff, 0xfe]), Buffer.from([0x00, 0xc3]), 'body', '"y"'],
      ['r', 'not a retry payload'],
      ['body', '"z"', 'body', '"twice"', 'key', ''],
      ['h:', 'empty header name', 'ce-', 'bare', 'body', '"w"'],
    ];
    for (const fields of odd) await raw.xadd(key, '*', ...fields);
    await group.waitForCount(odd.length, 5_000);
    await broadcast.waitForCount(odd.length, 5_000);
    expect(broadcast.items.map(seen)).toEqual(group.items.map(seen));
    expect(group.items[0]?.payload).toEqual({ a: '1', b: '2' });
    expect(group.items[3]?.payload).toEqual({ r: 'not a retry payload' });
    expect(group.items[4]?.payload).toBe('twice');
  });

  it('a body that is not what it claims: a group dead-letters it, broadcast drops it, both read on', async () => {
    const bus = await open();
    const topic = uniqueName('undecodable');
    const groupName = uniqueName('g');
    const group = collect<unknown>();
    const broadcast = collect<unknown>();
    await bus.subscribe(topic, async (m) => void group.push(m.payload), { group: groupName });
    await bus.subscribe(topic, async (m) => void broadcast.push(m.payload));
    await raw.xadd(streamKey('busbar:', topic), '*', 'content-type', 'application/json', 'body', '{not json');
    await bus.publish(topic, 'after');
    await group.waitForCount(1, 5_000);
    await broadcast.waitForCount(1, 5_000);
    expect(group.items).toEqual(['after']);
    expect(broadcast.items).toEqual(['after']);
    const dlq = streamKey('busbar:', `${topic}.${groupName}.dlq`);
    await waitFor(async () => (await raw.xlen(dlq)) === 1, 5_000, 'the undecodable entry dead-lettered');
  });

  // Issue 19: a failed read was reported as a PublishError.
  for (const mode of ['group', 'broadcast'] as const) {
    it(`a failed read (${mode}) is reported typed (the topic's key is not a stream), not as a PublishError, and reading resumes`, async () => {
      const logger = capturing();
      const bus = await open({ logger, blockMs: 200 });
      const topic = uniqueName(`fail-${mode}`);
      const key = streamKey('busbar:', topic);
      const got = collect<unknown>();
      await bus.subscribe(topic, async (m) => void got.push(m.payload), mode === 'group' ? { group: 'g' } : {});
      // The stream key becomes a string: every XREAD / XREADGROUP on it fails with WRONGTYPE.
      await raw.del(key);
      await raw.set(key, 'not a stream');
      await waitFor(() => logger.errors.some((e) => e.includes('WRONGTYPE')), 5_000, 'a failed read reported');
      for (const error of logger.errors) expect(error).toMatch(/^InvalidTopicError: Reading '/);
      await raw.del(key);
      // Only new entries reach a recreated group or a broadcast reader: publish until one arrives.
      await waitFor(
        async () => {
          await bus.publish(topic, 'back');
          return got.items.includes('back');
        },
        5_000,
        'reading again',
      );
    });
  }

  it('a retry scheduled by busbar 0.1 (old source header) dead-letters with busbar-source-offset', async () => {
    const bus = await open();
    const topic = uniqueName('legacy');
    const group = uniqueName('g');
    const keys = topicKeys('busbar:', topic, group);
    const attempts = collect<number>();
    await bus.subscribe(
      topic,
      async (m) => {
        attempts.push(m.attempt);
        throw new Error('fails for good');
      },
      { group, retry: false },
    );
    const payload = {
      i: 'legacy-1',
      h: { 'busbar-redis-entry': '1700000000000-5', tenant: 'acme' },
      a: 2,
      b: Buffer.from('"old"').toString('base64'),
      s: '1700000000000-5',
      t: Date.now() - 60_000,
    };
    await raw.xadd(keys.retryStream, '*', 'r', JSON.stringify(payload));
    await attempts.waitForCount(1, 5_000);
    expect(attempts.items).toEqual([2]);
    const dlq = streamKey('busbar:', `${topic}.${group}.dlq`);
    await waitFor(async () => (await raw.xlen(dlq)) === 1, 5_000, 'dead letter written');
    const [[, fields]] = (await raw.xrange(dlq, '-', '+')) as [[string, string[]]];
    const headers: Record<string, string> = {};
    for (let i = 0; i + 1 < fields.length; i += 2) {
      const name = fields[i] as string;
      if (name.startsWith('h:')) headers[name.slice(2)] = fields[i + 1] as string;
    }
    expect(headers['busbar-source-offset']).toBe('1700000000000-5');
    expect(headers.tenant).toBe('acme');
  });
});
