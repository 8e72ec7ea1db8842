import { type Bus, type CloudEvent as BusbarCloudEvent, connect, type Message, silentLogger } from '@busbar/core';
import { brokerAvailable, brokerUrls, collect, sleep, uniqueName } from '@busbar/testing';
import { CloudEvent, HTTP } from 'cloudevents';
import { AckPolicy, DeliverPolicy, headers, type MsgHdrs, type NatsConnection, connect as natsConnect } from 'nats';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { driver } from '../src/index.js';
import { cleanupStreams } from './helpers.js';

const ok = await brokerAvailable('nats');

/**
 * The NATS binding's header value rule (3.1.3.2), written out here independently of the driver: space, '"',
 * '%' and everything outside printable ASCII become %XX of their UTF-8 bytes.
 */
function pct(value: string): string {
  let out = '';
  for (const ch of value) {
    const c = ch.codePointAt(0) as number;
    if (c > 0x20 && c < 0x7f && ch !== '"' && ch !== '%') out += ch;
    else for (const b of Buffer.from(ch, 'utf8')) out += `%${b.toString(16).toUpperCase().padStart(2, '0')}`;
  }
  return out;
}

/**
 * A binary-mode CloudEvent as a NATS binding producer writes it, from the SDK's HTTP binary headers (the
 * same `ce-` names): every attribute a `ce-` header, `datacontenttype` included (HTTP's Content-Type).
 */
function natsBinary(event: CloudEvent<unknown>): { h: MsgHdrs; body: Uint8Array } {
  const http = HTTP.binary(event);
  const h = headers();
  for (const [name, value] of Object.entries(http.headers)) {
    if (name === 'content-type') h.set('ce-datacontenttype', pct(String(value)));
    else if (name.startsWith('ce-')) h.set(name, pct(String(value)));
  }
  const body = typeof http.body === 'string' ? Buffer.from(http.body) : (http.body as Uint8Array);
  return { h, body };
}

interface Seen {
  id: string;
  payload: unknown;
  contentType: string | undefined;
  cloudEvent: BusbarCloudEvent | undefined;
  headers: Record<string, string>;
  attempt: number;
}
const seen = (m: Message<unknown>): Seen => ({
  id: m.id,
  payload: m.payload,
  contentType: m.contentType,
  cloudEvent: m.cloudEvent,
  headers: { ...m.headers },
  attempt: m.attempt,
});

describe.runIf(ok)('nats CloudEvents (NATS protocol binding, binary and structured)', () => {
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

  it('reads a foreign binary-mode and structured-mode event: id, type, source, extensions, payload', async () => {
    const topic = `${base('nce')}.in`;
    const got = collect<Seen>();
    await bus.subscribe(topic, async (m) => got.push(seen(m)), { group: 'g' });
    const binary = new CloudEvent({
      id: 'evt-bin-1',
      type: 'com.example.order.created',
      source: '/orders/caf%C3%A9',
      subject: 'order 7 \u00fc "q" 100%',
      datacontenttype: 'application/json',
      data: { order: 7 },
      tenant: 'acme',
    });
    const { h, body } = natsBinary(binary);
    expect(h.get('ce-source')).toBe('/orders/caf%25C3%25A9');
    expect(h.get('ce-subject')).toBe('order%207%20%C3%BC%20%22q%22%20100%25');
    const js = nc.jetstream();
    await js.publish(topic, body, { headers: h });
    const structured = new CloudEvent({
      id: 'evt-str-1',
      type: 'com.example.order.paid',
      source: '/payments',
      data: { paid: true },
    });
    const s = HTTP.structured(structured);
    const sh = headers();
    sh.set('Content-Type', String(s.headers['content-type']));
    await js.publish(topic, Buffer.from(s.body as string), { headers: sh });
    await got.waitForCount(2, 10_000);
    const [b, st] = got.items as [Seen, Seen];
    expect(b.id).toBe('evt-bin-1');
    expect(b.payload).toEqual({ order: 7 });
    expect(b.contentType).toBe('application/json');
    expect(b.cloudEvent).toMatchObject({
      specversion: '1.0',
      id: 'evt-bin-1',
      type: 'com.example.order.created',
      source: '/orders/caf%C3%A9',
      subject: 'order 7 \u00fc "q" 100%',
      datacontenttype: 'application/json',
      extensions: { tenant: 'acme' },
    });
    // The content type is message.contentType, not a header (as Content-Type is).
    expect(Object.keys(b.headers)).not.toContain('ce-datacontenttype');
    expect(b.headers['ce-subject']).toBe('order 7 \u00fc "q" 100%');
    expect(st.id).toBe('evt-str-1');
    expect(st.payload).toEqual({ paid: true });
    expect(st.cloudEvent).toMatchObject({ id: 'evt-str-1', type: 'com.example.order.paid', source: '/payments' });
  });

  it('publishes a binary-mode event a raw consumer reads header by header and the SDK decodes', async () => {
    const topic = `${base('nco')}.out`;
    await bus.subscribe(`${topic}.#`, async () => {}, { group: 'keeps-the-stream' });
    const id = await bus.publish(
      topic,
      { order: 9 },
      {
        cloudEvent: {
          type: 'com.example.order.created',
          source: '/orders/caf%C3%A9',
          subject: 'o 9 \u00fc',
          extensions: { tenant: 'acme' },
        },
      },
    );
    const jsm = await nc.jetstreamManager();
    const stream = await jsm.streams.find(topic);
    await jsm.consumers.add(stream, {
      durable_name: 'raw_ce',
      ack_policy: AckPolicy.Explicit,
      deliver_policy: DeliverPolicy.All,
      filter_subject: topic,
    });
    const m = await (await nc.jetstream().consumers.get(stream, 'raw_ce')).next({ expires: 5_000 });
    if (!m?.headers) throw new Error('no message');
    m.ack();
    const ce: Record<string, string> = {};
    for (const [name, values] of m.headers) if (name.startsWith('ce-')) ce[name] = values.join(',');
    // The binding's header names and percent-encoded values; datacontenttype is a ce- header too.
    expect(ce).toEqual({
      'ce-specversion': '1.0',
      'ce-id': id,
      'ce-type': 'com.example.order.created',
      'ce-source': '/orders/caf%25C3%25A9',
      'ce-subject': 'o%209%20%C3%BC',
      'ce-time': expect.stringMatching(/^\d{4}-\d\d-\d\dT/),
      'ce-tenant': 'acme',
      'ce-datacontenttype': 'application/json',
    });
    // The SDK has no NATS binding: its HTTP one has the same ce- names, with datacontenttype as content-type.
    const httpHeaders: Record<string, string> = {};
    for (const [name, value] of Object.entries(ce)) {
      const decoded = decodeURIComponent(value);
      if (name === 'ce-datacontenttype') httpHeaders['content-type'] = decoded;
      else httpHeaders[name] = decoded;
    }
    const event = HTTP.toEvent({ headers: httpHeaders, body: Buffer.from(m.data).toString() }) as CloudEvent<unknown>;
    expect(event.id).toBe(id);
    expect(event.type).toBe('com.example.order.created');
    expect(event.source).toBe('/orders/caf%C3%A9');
    expect(event.subject).toBe('o 9 \u00fc');
    expect(event.tenant).toBe('acme');
    expect(event.data).toEqual({ order: 9 });
    const sdkNames = Object.keys(HTTP.binary(event).headers).filter((n) => n.startsWith('ce-'));
    expect(sdkNames.sort()).toEqual(
      Object.keys(ce)
        .filter((n) => n !== 'ce-datacontenttype')
        .sort(),
    );
  });

  it('a foreign event keeps its id and attributes through a retry, and its undecodable twin dead-letters as bytes', async () => {
    const topic = `${base('ncr')}.retry`;
    const got = collect<Seen>();
    const dead = collect<Seen>();
    await bus.subscribe(`${topic}.g.dlq`, async (m) => dead.push(seen(m)), { group: 'reader' });
    let fail = true;
    await bus.subscribe(
      topic,
      async (m) => {
        got.push(seen(m));
        if (fail) {
          fail = false;
          throw new Error('once');
        }
      },
      { group: 'g', retry: { maxAttempts: 3, initialDelayMs: 50, maxDelayMs: 50 } },
    );
    const js = nc.jetstream();
    const event = new CloudEvent({
      id: 'evt-r-1',
      type: 'com.example.t',
      source: '/a/100%25',
      subject: 'a "b" 100%',
      datacontenttype: 'text/plain; charset=utf-8',
      data: 'hello',
    });
    const good = natsBinary(event);
    await js.publish(topic, good.body, { headers: good.h });
    await got.waitForCount(2, 10_000);
    const [first, second] = got.items as [Seen, Seen];
    expect(second.attempt).toBe(2);
    for (const m of [first, second]) {
      expect(m.id).toBe('evt-r-1');
      expect(m.payload).toBe('hello');
      expect(m.contentType).toBe('text/plain; charset=utf-8');
      expect(m.cloudEvent?.source).toBe('/a/100%25');
      expect(m.cloudEvent?.subject).toBe('a "b" 100%');
    }
    // Same attributes, a body that is not the JSON its datacontenttype says.
    const broken = natsBinary(new CloudEvent({ id: 'evt-r-2', type: 'com.example.t', source: '/x', data: { a: 1 } }));
    await js.publish(topic, Buffer.from('{nope'), { headers: broken.h });
    await dead.waitForCount(1, 10_000);
    const letter = dead.items[0] as Seen;
    expect(letter.payload).toBeInstanceOf(Uint8Array);
    expect(Buffer.from(letter.payload as Uint8Array).toString()).toBe('{nope');
    expect(letter.contentType).toBe('application/octet-stream');
    expect(letter.id).toBe('evt-r-2');
    await sleep(300);
    expect(dead.items).toHaveLength(1);
  });

  it("a user header 'ce-datacontenttype' on a CloudEvent is InvalidHeaderError (it is the content type)", async () => {
    const topic = `${base('ncx')}.reserved`;
    const cloudEvent = { type: 'com.example.t', source: '/x' };
    const error = await bus
      .publish(topic, 1, { cloudEvent, headers: { 'ce-datacontenttype': 'text/plain' } })
      .catch((e: unknown) => e);
    expect((error as { code?: string }).code).toBe('BUSBAR_INVALID_HEADER');
    expect((error as { retryable?: boolean }).retryable).toBe(false);
    // On a message that is no CloudEvent it is a header like any other; and the bus still works.
    const got = collect<Seen>();
    await bus.subscribe(topic, async (m) => got.push(seen(m)), { group: 'g' });
    await bus.publish(topic, 2, { headers: { 'ce-datacontenttype': 'text/plain' } });
    await bus.publish(topic, 3, { cloudEvent });
    await got.waitForCount(2, 5_000);
    const [plain, event] = got.items as [Seen, Seen];
    expect(plain).toMatchObject({ payload: 2, headers: { 'ce-datacontenttype': 'text/plain' } });
    expect(plain.cloudEvent).toBeUndefined();
    expect(event).toMatchObject({ payload: 3, contentType: 'application/json' });
    expect(event.cloudEvent).toMatchObject({
      type: 'com.example.t',
      source: '/x',
      datacontenttype: 'application/json',
    });
    expect(event.id).toBe(event.cloudEvent?.id);
  });
});
