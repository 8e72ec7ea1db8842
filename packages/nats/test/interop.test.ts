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
import { brokerAvailable, brokerUrls, collect, sleep, uniqueName } from '@busbar/testing';
import { AckPolicy, DeliverPolicy, headers, type JsMsg, type NatsConnection, connect as natsConnect } from 'nats';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { driver } from '../src/index.js';
import { cleanupStreams } from './helpers.js';

const ok = await brokerAvailable('nats');
const enc = new TextEncoder();

/** Headers as a raw nats.js publisher writes them (`append` repeats a key). */
function hdrs(entries: [string, string][]) {
  const h = headers();
  for (const [name, value] of entries) h.append(name, value);
  return h;
}

/** busbar's id of a foreign message without a usable `Nats-Msg-Id`: `<stream>:<created ms>:<sequence>`. */
async function foreignId(nc: NatsConnection, stream: string, seq: number): Promise<string> {
  const info = await (await nc.jetstreamManager()).streams.info(stream);
  return `${stream}:${Date.parse(info.created)}:${seq}`;
}

/** What a handler saw, minus the raw message. */
interface Seen {
  id: string;
  topic: string;
  payload: unknown;
  headers: Record<string, string>;
  contentType: string | undefined;
  timestamp: number;
  attempt: number;
}
const seen = (m: Message<unknown>): Seen => ({
  id: m.id,
  topic: m.topic,
  payload: m.payload,
  headers: { ...m.headers },
  contentType: m.contentType,
  timestamp: m.timestamp.getTime(),
  attempt: m.attempt,
});

describe.runIf(ok)('nats interop with raw nats.js clients', () => {
  const prefixes: string[] = [];
  let nc: NatsConnection;
  let bus: Bus;
  const base = (name: string) => {
    const p = uniqueName(name);
    prefixes.push(p);
    return p;
  };
  beforeAll(async () => {
    nc = await natsConnect({ servers: new URL(brokerUrls.nats).host });
    bus = await connect({ url: brokerUrls.nats, driver, logger: silentLogger, maxAgeMs: 3_600_000 });
  });
  afterAll(async () => {
    await bus?.close();
    await nc?.close();
    await cleanupStreams(prefixes);
  });

  it('foreign messages reach the handler with their id, payload type, headers and content type', async () => {
    const topic = `${base('nif')}.in`;
    const got = collect<Seen>();
    await bus.subscribe(topic, async (m) => got.push(seen(m)), { group: 'g' });
    const js = nc.jetstream();
    // Core NATS, no headers at all: the stream captures it; its identity is the stream sequence.
    nc.publish(topic, enc.encode('{"core":true}'));
    await nc.flush();
    await sleep(100);
    const plain = await js.publish(topic, enc.encode('hello'), { headers: hdrs([['Content-Type', 'text/plain']]) });
    const withId = await js.publish(topic, enc.encode('{"n":1}'), {
      msgID: 'order-42',
      headers: hdrs([['content-type', 'application/json; charset=utf-8']]),
    });
    await js.publish(topic, new Uint8Array([0xff, 0x00, 0x01]), {
      headers: hdrs([['Content-Type', 'application/octet-stream']]),
    });
    await js.publish(topic, enc.encode('{"v":2}'), { headers: hdrs([['Content-Type', 'application/vnd.acme+json']]) });
    await js.publish(topic, enc.encode('not json'));
    await js.publish(topic, enc.encode('"tags"'), {
      headers: hdrs([
        ['x-tag', 'a'],
        ['x-tag', 'b'],
        ['X-Trace', ' t-1 '],
        ['empty', ''],
      ]),
    });
    await got.waitForCount(7, 10_000);
    const [core, text, json, bytes, vendor, notJson, tags] = got.items as [Seen, Seen, Seen, Seen, Seen, Seen, Seen];
    const stream = plain.stream;
    const coreId = await foreignId(nc, stream, plain.seq - 1);
    expect(core).toMatchObject({ id: coreId, payload: { core: true }, headers: {} });
    expect(core.contentType).toBeUndefined();
    const textId = await foreignId(nc, stream, plain.seq);
    expect(text).toMatchObject({ id: textId, payload: 'hello', contentType: 'text/plain' });
    expect(json).toMatchObject({ id: 'order-42', payload: { n: 1 }, contentType: 'application/json; charset=utf-8' });
    expect(withId.seq).toBe(plain.seq + 1);
    expect(bytes.payload).toBeInstanceOf(Uint8Array);
    expect([...(bytes.payload as Uint8Array)]).toEqual([0xff, 0x00, 0x01]);
    expect(vendor.payload).toEqual({ v: 2 });
    expect(notJson.payload).toBeInstanceOf(Uint8Array);
    expect(new TextDecoder().decode(notJson.payload as Uint8Array)).toBe('not json');
    // A repeated key is joined with ', '; the content type and Nats-Msg-Id are not headers.
    expect(tags.headers).toEqual({ 'x-tag': 'a, b', 'X-Trace': 't-1', empty: '' });
    for (const m of got.items) {
      expect(m.topic).toBe(topic);
      expect(m.attempt).toBe(1);
      expect(Math.abs(m.timestamp - Date.now())).toBeLessThan(60_000);
      expect(Object.keys(m.headers).some((h) => h.toLowerCase() === 'content-type' || h.startsWith('Nats-'))).toBe(
        false,
      );
    }
  });

  it('equal foreign bodies without ids are both handled under idempotency: the stream sequence is their id', async () => {
    const topic = `${base('nii')}.same`;
    const warnings: string[] = [];
    const logger: Logger = { ...silentLogger, warn: (message) => warnings.push(message) };
    const own = await connect({ url: brokerUrls.nats, driver, logger, maxAgeMs: 3_600_000 });
    const got = collect<Seen>();
    let failFirst = true;
    await own.subscribe(
      topic,
      async (m) => {
        got.push(seen(m));
        if (failFirst) {
          failFirst = false;
          throw new Error('once');
        }
      },
      {
        group: 'g',
        idempotency: { store: new MemoryIdempotencyStore() },
        retry: { maxAttempts: 3, initialDelayMs: 50, maxDelayMs: 50 },
      },
    );
    const js = nc.jetstream();
    const a = await js.publish(topic, enc.encode('{"same":1}'));
    const b = await js.publish(topic, enc.encode('{"same":1}'));
    // An id that is empty, over 1 KB or holds control characters is no id: the sequence stands in for it.
    const absurd = ['', 'x'.repeat(1_100), 'a\u0001b', 'tab\there'];
    const absurdAcks = [];
    for (const id of absurd) {
      absurdAcks.push(await js.publish(topic, enc.encode('{"same":1}'), { headers: hdrs([['Nats-Msg-Id', id]]) }));
    }
    await got.waitForCount(3 + absurd.length, 10_000);
    await sleep(300);
    const ids = got.items.map((m) => m.id);
    // The first one failed once and came back with the same id (a retry, not a new message).
    const aId = await foreignId(nc, a.stream, a.seq);
    expect(ids[0]).toBe(aId);
    expect(ids.filter((id) => id === aId)).toHaveLength(2);
    expect(ids).toContain(await foreignId(nc, b.stream, b.seq));
    for (const ack of absurdAcks) expect(ids).toContain(await foreignId(nc, ack.stream, ack.seq));
    expect(new Set(ids).size).toBe(2 + absurd.length);
    // The broker gave every one an identity: nothing was made up, so no warning.
    expect(warnings.filter((w) => w.includes('carry no id'))).toEqual([]);
    await own.close();
  });

  it('a foreign message busbar cannot decode is dead-lettered as bytes a plain busbar subscriber reads', async () => {
    const topic = `${base('nid')}.bad`;
    const dlq = `${topic}.g.dlq`;
    const dead = collect<Seen>();
    await bus.subscribe(dlq, async (m) => dead.push({ ...seen(m), headers: { dl: String(m.deadLetter?.errorName) } }), {
      group: 'reader',
      retry: { maxAttempts: 1 },
    });
    const handled = collect<unknown>();
    await bus.subscribe(topic, async (m) => handled.push(m.payload), { group: 'g' });
    const js = nc.jetstream();
    await js.publish(topic, enc.encode('{broken'), { headers: hdrs([['Content-Type', 'application/json']]) });
    await dead.waitForCount(1, 10_000);
    const letter = dead.items[0] as Seen;
    expect(letter.payload).toBeInstanceOf(Uint8Array);
    expect(new TextDecoder().decode(letter.payload as Uint8Array)).toBe('{broken');
    expect(letter.contentType).toBe('application/octet-stream');
    expect(letter.headers.dl).toBe('DecodeError');
    await sleep(300);
    expect(dead.items).toHaveLength(1);
    expect(handled.items).toEqual([]);
  });

  it('a busbar message is readable by a raw JetStream consumer', async () => {
    const topic = `${base('nio')}.out`;
    await bus.subscribe(`${topic}.#`, async () => {}, { group: 'keeps-the-stream' });
    const id = await bus.publish(topic, { order: 7 }, { key: 'k-7', headers: { tenant: 'acme' } });
    const textId = await bus.publish(defineTopic(`${topic}.text`, undefined, { codec: codecs.string }), 'plain text');
    await bus.publish(defineTopic(`${topic}.bytes`, undefined, { codec: codecs.bytes }), new Uint8Array([1, 2]));
    const jsm = await nc.jetstreamManager();
    const stream = await jsm.streams.find(topic);
    await jsm.consumers.add(stream, {
      durable_name: 'raw_reader',
      ack_policy: AckPolicy.Explicit,
      deliver_policy: DeliverPolicy.All,
      filter_subject: `${topic.split('.')[0]}.>`,
    });
    const consumer = await nc.jetstream().consumers.get(stream, 'raw_reader');
    const read: JsMsg[] = [];
    for (let i = 0; i < 3; i++) {
      const m = await consumer.next({ expires: 5_000 });
      if (!m) break;
      m.ack();
      read.push(m);
    }
    const [json, text, bytes] = read as [JsMsg, JsMsg, JsMsg];
    expect(read.map((m) => m.subject)).toEqual([topic, `${topic}.text`, `${topic}.bytes`]);
    expect(JSON.parse(new TextDecoder().decode(json.data))).toEqual({ order: 7 });
    expect(json.headers?.get('Nats-Msg-Id')).toBe(`${topic}:${id}`);
    expect(json.headers?.get('Content-Type')).toBe('application/json');
    expect(json.headers?.get('busbar-key')).toBe('k-7');
    expect(json.headers?.get('tenant')).toBe('acme');
    expect(Math.abs(json.info.timestampNanos / 1e6 - Date.now())).toBeLessThan(60_000);
    expect(new TextDecoder().decode(text.data)).toBe('plain text');
    expect(text.headers?.get('Content-Type')).toBe('text/plain; charset=utf-8');
    expect(text.headers?.get('Nats-Msg-Id')).toBe(`${topic}.text:${textId}`);
    expect([...bytes.data]).toEqual([1, 2]);
    expect(bytes.headers?.get('Content-Type')).toBe('application/octet-stream');
  });

  it('a wildcard group delivers, retries and dead-letters subjects that are not valid busbar topics', async () => {
    const p = base('niw');
    const odd = ['caf\u00e9', 'a$b', 'a:b', 'a/b+c', 'UP~x', '\u{1f600}', 'x'.repeat(300)].map((t) => `${p}.${t}`);
    const dead = collect<{ topic: string; from: string | undefined; payload: unknown }>();
    await bus.subscribe(
      `${p}.any.g.dlq`,
      async (m) => dead.push({ topic: m.topic, from: m.deadLetter?.topic, payload: m.payload }),
      { group: 'reader' },
    );
    const runs: { topic: string; attempt: number; payload: unknown }[] = [];
    await bus.subscribe(
      `${p}.*`,
      async (m) => {
        runs.push({ topic: m.topic, attempt: m.attempt, payload: m.payload });
        if (m.payload === 'fail') throw new Error('always');
      },
      { group: 'g', retry: { maxAttempts: 2, initialDelayMs: 50, maxDelayMs: 50 } },
    );
    const js = nc.jetstream();
    for (const subject of odd) {
      await js.publish(subject, enc.encode('"ok"'));
      await js.publish(subject, enc.encode('"fail"'));
    }
    await dead.waitForCount(odd.length, 15_000);
    for (const subject of odd) {
      const mine = runs.filter((r) => r.topic === subject);
      expect(mine.filter((r) => r.payload === 'ok').map((r) => r.attempt)).toEqual([1]);
      expect(mine.filter((r) => r.payload === 'fail').map((r) => r.attempt)).toEqual([1, 2]);
    }
    expect(dead.items.map((d) => d.from).sort()).toEqual([...odd].sort());
    for (const d of dead.items) expect(d).toMatchObject({ topic: `${p}.any.g.dlq`, payload: 'fail' });
  });

  it("a wildcard group's dead-letter subject is checked at subscribe against an existing stream", async () => {
    const p = base('nic');
    const stream = `SHOP_${p.replace(/[^A-Za-z0-9_-]/g, '_')}`;
    const own = await connect({
      url: brokerUrls.nats,
      driver,
      logger: silentLogger,
      streams: { [stream]: [`${p}.*`] },
    });
    const error = await own.subscribe(`${p}.*`, async () => {}, { group: 'g' }).catch((e: unknown) => e);
    expect((error as { code?: string }).code).toBe('BUSBAR_CONFIG');
    expect(String((error as Error).message)).toContain(`${p}.any.g.dlq`);
    expect(String((error as Error).message)).toContain(stream);
    // A stream that also holds the dead letters takes the same subscription, and the bus still works.
    const covering = await connect({
      url: brokerUrls.nats,
      driver,
      logger: silentLogger,
      streams: { [`${stream}_all`]: [`${p}x.#`] },
    });
    const got = collect<number>();
    await covering.subscribe<number>(`${p}x.*`, async (m) => got.push(m.payload), { group: 'g' });
    await covering.publish(`${p}x.a`, 1);
    await got.waitForCount(1, 5_000);
    expect(got.items).toEqual([1]);
    await covering.close();
    await own.close();
    const jsm = await nc.jetstreamManager();
    for (const s of [stream, `${stream}_all`]) await jsm.streams.delete(s).catch(() => undefined);
  });

  it("another tool's stream that captures the topic but not its dead letters fails subscribe, naming both", async () => {
    const p = base('nie');
    const stream = `TOOL_${p.replace(/[^A-Za-z0-9_-]/g, '_')}`;
    const jsm = await nc.jetstreamManager();
    await jsm.streams.add({ name: stream, subjects: [`${p}.*`] });
    try {
      // The default mapping would create BUSBAR_<p> for `<p>.>`: it overlaps, so busbar uses the existing stream.
      const error = await bus.subscribe(`${p}.created`, async () => {}, { group: 'g' }).catch((e: unknown) => e);
      expect((error as { code?: string }).code).toBe('BUSBAR_CONFIG');
      expect(String((error as Error).message)).toContain(`${p}.created.g.dlq`);
      expect(String((error as Error).message)).toContain(stream);
      // Without dead letters it reads from that stream, what another client publishes there included.
      const got = collect<unknown>();
      await bus.subscribe(`${p}.created`, async (m) => got.push(m.payload), { group: 'g', deadLetter: false });
      await nc.jetstream().publish(`${p}.created`, enc.encode('{"from":"tool"}'));
      await bus.publish(`${p}.created`, { from: 'busbar' });
      await got.waitForCount(2, 5_000);
      expect(got.items).toEqual([{ from: 'tool' }, { from: 'busbar' }]);
    } finally {
      await jsm.streams.delete(stream).catch(() => undefined);
    }
  });
});
