import {
  type Bus,
  codecs,
  connect,
  defineTopic,
  type Logger,
  MemoryIdempotencyStore,
  type Message,
  silentLogger,
} from '@busbar/core';
import { brokerAvailable, brokerUrls, collect, sleep, uniqueName, waitFor } from '@busbar/testing';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { driver } from '../src/index.js';
import { streamKey } from '../src/keys.js';

const ok = await brokerAvailable('redis');
const key = (topic: string) => streamKey('busbar:', topic);

/** What a handler saw, minus the raw record. */
interface Seen {
  id: string;
  payload: unknown;
  headers: Record<string, string>;
  contentType: string | undefined;
  timestamp: number;
  attempt: number;
  entryId: string;
}
const seen = (m: Message<unknown>): Seen => ({
  id: m.id,
  payload: m.payload,
  headers: { ...m.headers },
  contentType: m.contentType,
  timestamp: m.timestamp.getTime(),
  attempt: m.attempt,
  entryId: (m.raw as { entryId: string }).entryId,
});
const entryTime = (entryId: string) => Number(entryId.split('-')[0]);

describe.runIf(ok)('redis interop with raw ioredis clients', () => {
  let raw: Redis;
  let bus: Bus;
  beforeAll(async () => {
    raw = new Redis(brokerUrls.redis);
    bus = await connect({ url: brokerUrls.redis, driver, logger: silentLogger });
  });
  afterAll(async () => {
    await bus?.close();
    await raw?.quit();
  });

  it('plain foreign shapes: one data-style field is the body, several fields a JSON object', async () => {
    const topic = uniqueName('plain');
    const got = collect<Seen>();
    await bus.subscribe(topic, async (m) => void got.push(seen(m)), { group: 'g' });
    // A second reader of the same entries (broadcast, XREAD): it must see the same ids and payloads.
    const again = collect<Seen>();
    await bus.subscribe(topic, async (m) => void again.push(seen(m)));
    const bytes = Buffer.from([0xff, 0x00, 0xfe, 0x80]);
    const shapes: (string | Buffer)[][] = [
      ['data', '{"a":1}'],
      ['payload', 'hello', 'content-type', 'text/plain'],
      ['message', bytes, 'ct', 'application/octet-stream'],
      ['message', bytes],
      ['value', '42'],
      ['orderId', '42', 'total', '9.5'],
      ['id', 'order-7', 'data', '{"n":1}', 'h:x-trace', 't-1', 'Content-Type', 'application/json; charset=utf-8'],
      ['id', '', 'data', '"empty id"'],
      ['tag', 'a', 'tag', 'b', '__proto__', 'p', 'h:x-tenant', 'acme'],
      ['payload', 'plain words'],
    ];
    const ids: string[] = [];
    for (const fields of shapes) ids.push(String(await raw.xadd(key(topic), '*', ...fields)));
    await got.waitForCount(shapes.length, 10_000);
    const byEntry = new Map(got.items.map((s) => [s.entryId, s]));
    const at = (i: number) => byEntry.get(ids[i] as string) as Seen;

    expect(at(0)).toMatchObject({ id: ids[0], payload: { a: 1 }, headers: {}, contentType: undefined });
    expect(at(1)).toMatchObject({ payload: 'hello', contentType: 'text/plain', headers: {} });
    expect(Buffer.from(at(2).payload as Uint8Array)).toEqual(bytes);
    expect(at(2).contentType).toBe('application/octet-stream');
    // No content type and not JSON: the bytes as they are.
    expect(Buffer.from(at(3).payload as Uint8Array)).toEqual(bytes);
    expect(at(4).payload).toBe(42);
    // Several plain fields: an object of strings (Redis stores strings; busbar does not guess numbers).
    expect(at(5)).toMatchObject({ payload: { orderId: '42', total: '9.5' }, contentType: 'application/json' });
    expect(at(6)).toMatchObject({
      id: 'order-7',
      payload: { n: 1 },
      headers: { 'x-trace': 't-1' },
      contentType: 'application/json; charset=utf-8',
    });
    // An empty id is no id: the entry id stands in.
    expect(at(7)).toMatchObject({ id: ids[7], payload: 'empty id' });
    // A repeated field joins its values; `__proto__` is an own key, not a prototype; `h:` fields are headers.
    const tags = at(8).payload as Record<string, string>;
    expect(tags.tag).toBe('a, b');
    expect(Object.hasOwn(tags, '__proto__')).toBe(true);
    expect(Object.getPrototypeOf(tags)).toBe(Object.prototype);
    expect(at(8).headers).toEqual({ 'x-tenant': 'acme' });
    expect(new TextDecoder().decode(at(9).payload as Uint8Array)).toBe('plain words');
    for (const [i, s] of ids.entries()) {
      const m = at(i);
      expect(m.attempt).toBe(1);
      expect(m.timestamp).toBe(entryTime(s));
      expect(Object.keys(m.headers).some((h) => /^(ct|content-type|id)$/i.test(h))).toBe(false);
    }
    await again.waitForCount(shapes.length, 10_000);
    const strip = ({ attempt: _a, ...rest }: Seen) => rest;
    expect(again.items.map(strip)).toEqual(ids.map((id) => strip(byEntry.get(id) as Seen)));
  });

  it('entries in the format busbar wrote before (body, id, h JSON, ct) still read the same', async () => {
    const topic = uniqueName('legacy');
    const got = collect<Seen>();
    await bus.subscribe(topic, async (m) => void got.push(seen(m)), { group: 'g' });
    const old = Date.now() - 60_000;
    await raw.xadd(key(topic), '*', 'body', '{"old":true}', 'id', 'old-1', 'key', 'k', 'h', '{"x-a":"1"}');
    await raw.xadd(key(topic), '*', 'body', 'plain', 'id', 'old-2', 'ts', String(old), 'ct', 'text/plain');
    await got.waitForCount(2, 10_000);
    const [a, b] = got.items as [Seen, Seen];
    expect(a).toMatchObject({ id: 'old-1', payload: { old: true }, headers: { 'x-a': '1' } });
    expect(a.contentType).toBe('application/json');
    expect(b).toMatchObject({ id: 'old-2', payload: 'plain', contentType: 'text/plain', timestamp: old });
  });

  it('the entry id is the identity: equal bodies are both handled under idempotency, stable on redelivery', async () => {
    const topic = uniqueName('ident');
    const warnings: string[] = [];
    const logger: Logger = { ...silentLogger, warn: (message) => void warnings.push(message) };
    const own = await connect({ url: brokerUrls.redis, driver, logger });
    try {
      const got = collect<Seen>();
      await own.subscribe(
        topic,
        async (m) => {
          got.push(seen(m));
          if (m.attempt === 1) throw new Error('once more');
        },
        {
          group: 'g',
          idempotency: { store: new MemoryIdempotencyStore() },
          retry: { maxAttempts: 3, initialDelayMs: 20, maxDelayMs: 20 },
        },
      );
      const a = String(await raw.xadd(key(topic), '*', 'data', '{"same":1}'));
      const b = String(await raw.xadd(key(topic), '*', 'data', '{"same":1}'));
      const c = String(await raw.xadd(key(topic), '*', 'orderId', '1', 'total', '2'));
      await got.waitForCount(6, 10_000);
      await sleep(200);
      expect(got.items).toHaveLength(6);
      const byId = (id: string) => got.items.filter((s) => s.id === id).map((s) => s.attempt);
      // Each entry: attempt 1 failed, attempt 2 (from the retry stream) handled under the same id.
      expect(byId(a)).toEqual([1, 2]);
      expect(byId(b)).toEqual([1, 2]);
      expect(byId(c)).toEqual([1, 2]);
      expect(got.items.filter((s) => s.id === c).map((s) => s.payload)).toEqual([
        { orderId: '1', total: '2' },
        { orderId: '1', total: '2' },
      ]);
      // The entry id is a native identity, not a made-up one: no "cannot deduplicate" warning.
      expect(warnings.filter((w) => w.includes('carry no id'))).toEqual([]);
    } finally {
      await own.close();
    }
  });

  it("a foreign undecodable entry's dead letter is read as bytes by a plain busbar subscription", async () => {
    const topic = uniqueName('undecodable');
    const group = 'g';
    const dlq = `${topic}.${group}.dlq`;
    const letters = collect<Message<unknown>>();
    await bus.subscribe(dlq, async (m) => void letters.push(m), { group: 'reader' });
    await bus.subscribe(topic, async () => undefined, { group });
    const broken = Buffer.from([0x7b, 0xff, 0xfe, 0x00]);
    const a = String(await raw.xadd(key(topic), '*', 'data', 'not json{', 'content-type', 'application/json'));
    const b = String(await raw.xadd(key(topic), '*', 'data', broken, 'content-type', 'application/vnd.x+json'));
    await letters.waitForCount(2, 10_000);
    const byId = new Map(letters.items.map((m) => [m.id, m]));
    const first = byId.get(a) as Message<unknown>;
    const second = byId.get(b) as Message<unknown>;
    expect(new TextDecoder().decode(first.payload as Uint8Array)).toBe('not json{');
    expect(Buffer.from(second.payload as Uint8Array)).toEqual(broken);
    for (const m of [first, second]) {
      expect(m.contentType).toBe('application/octet-stream');
      expect(m.deadLetter?.topic).toBe(topic);
      expect(m.deadLetter).toMatchObject({ errorName: 'DecodeError', group, attempts: 0 });
    }
    // Handled, not dead-lettered again.
    await sleep(300);
    expect(await raw.exists(key(`${dlq}.reader.dlq`))).toBe(0);
    // The bus still works after the bad input.
    const got = collect<string>();
    await bus.subscribe(topic, async (m) => void got.push(m.id), { group: 'after' });
    const id = await bus.publish(topic, { fine: true });
    await waitFor(() => got.items.includes(id), 5_000, 'a round trip after the undecodable entries');
  });

  it('a raw XREADGROUP consumer reads payload, id, key, content type and headers of busbar entries', async () => {
    const topic = uniqueName('out');
    await raw.xgroup('CREATE', key(topic), 'foreign', '$', 'MKSTREAM');
    const json = await bus.publish(topic, { a: 1 }, { key: 'k1', headers: { 'x-trace': 't-1', Tenant: 'acme' } });
    const text = defineTopic(topic, undefined, { codec: { ...codecs.string, contentType: 'text/plain' } });
    const textId = await bus.publish(text, 'héllo');
    const binary = defineTopic(topic, undefined, { codec: codecs.bytes });
    const bytes = Buffer.from([0xff, 0x00, 0xc3]);
    const binId = await bus.publish(binary, bytes);
    // ioredis has the Buffer variant of every command at run time; its typings omit this one.
    const readBuffers = (raw as unknown as { xreadgroupBuffer(...args: (string | number)[]): Promise<unknown> })
      .xreadgroupBuffer;
    const reply = (await readBuffers.call(raw, 'GROUP', 'foreign', 'c1', 'COUNT', 10, 'STREAMS', key(topic), '>')) as [
      Buffer,
      [Buffer, Buffer[]][],
    ][];
    const entries = (reply[0] as [Buffer, [Buffer, Buffer[]][]])[1];
    expect(entries).toHaveLength(3);
    const asMap = (fields: Buffer[]) => {
      const out = new Map<string, Buffer>();
      for (let i = 0; i + 1 < fields.length; i += 2) out.set(String(fields[i]), fields[i + 1] as Buffer);
      return out;
    };
    const [e1, e2, e3] = entries.map(([, fields]) => asMap(fields)) as [
      Map<string, Buffer>,
      Map<string, Buffer>,
      Map<string, Buffer>,
    ];
    // Every field a plain consumer needs, under plain names.
    expect([...e1.keys()].sort()).toEqual(['body', 'content-type', 'h:Tenant', 'h:x-trace', 'id', 'key'].sort());
    expect(JSON.parse(String(e1.get('body')))).toEqual({ a: 1 });
    expect(String(e1.get('id'))).toBe(json);
    expect(String(e1.get('key'))).toBe('k1');
    expect(String(e1.get('content-type'))).toBe('application/json');
    expect(String(e1.get('h:x-trace'))).toBe('t-1');
    expect(String(e1.get('h:Tenant'))).toBe('acme');
    expect(String(e2.get('body'))).toBe('héllo');
    expect(String(e2.get('content-type'))).toBe('text/plain');
    expect(String(e2.get('id'))).toBe(textId);
    expect(e3.get('body')).toEqual(bytes);
    expect(String(e3.get('content-type'))).toBe('application/octet-stream');
    expect(String(e3.get('id'))).toBe(binId);
    // The foreign group acks like any Redis consumer; busbar's own groups are unaffected.
    expect(await raw.xack(key(topic), 'foreign', ...entries.map(([id]) => String(id)))).toBe(3);
  });
});
