import { type Bus, connect, MemoryIdempotencyStore, type Message, silentLogger } from '@busbar/core';
import { brokerAvailable, brokerUrls, collect, sleep, uniqueName } from '@busbar/testing';
import { CloudEvent, HTTP } from 'cloudevents';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { driver } from '../src/index.js';
import { streamKey } from '../src/keys.js';

/**
 * Redis has no CloudEvents protocol binding. busbar writes binary mode as the HTTP binding does: one field
 * per attribute named `ce-<attribute>`, the data in `body` and `datacontenttype` as the `content-type` field;
 * so the SDK's HTTP binding stands in for a foreign producer or consumer (fields as the HTTP headers).
 */
const ok = await brokerAvailable('redis');
const key = (topic: string) => streamKey('busbar:', topic);

/** An HTTP binding message as stream fields: each header a field, the body in `data`. */
function asFields(message: { headers: Record<string, unknown>; body: unknown }): string[] {
  const fields: string[] = [];
  for (const [name, value] of Object.entries(message.headers)) fields.push(name, String(value));
  fields.push('data', String(message.body));
  return fields;
}

describe.runIf(ok)('redis interop: CloudEvents', () => {
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

  it('reads foreign events in binary mode (ce- fields, h: fields, h JSON) and structured mode', async () => {
    const topic = uniqueName('ce-in');
    const got = collect<Message<unknown>>();
    await bus.subscribe(topic, async (m) => void got.push(m), { group: 'g' });
    const binary = new CloudEvent({
      id: 'evt-binary',
      type: 'com.example.order.created',
      source: '/orders',
      subject: 'order-1',
      datacontenttype: 'application/json',
      data: { order: 1 },
      tenant: 'acme',
    });
    const structured = new CloudEvent({
      id: 'evt-structured',
      type: 'com.example.order.paid',
      source: 'urn:shop',
      data: { paid: true },
    });
    await raw.xadd(key(topic), '*', ...asFields(HTTP.binary(binary)));
    await raw.xadd(key(topic), '*', ...asFields(HTTP.structured(structured)));
    // Hand-built by a producer that stores headers as `h:` fields, and in the older `h` JSON field.
    const attrs = (id: string) => ['ce-specversion', '1.0', 'ce-id', id, 'ce-type', 't.hand', 'ce-source', '/hand'];
    const prefixed = attrs('evt-h-fields').map((v, i) => (i % 2 === 0 ? `h:${v}` : v));
    await raw.xadd(key(topic), '*', ...prefixed, 'content-type', 'text/plain', 'data', 'hi');
    const inJson = { 'ce-specversion': '1.0', 'ce-id': 'evt-h-json', 'ce-type': 't.hand', 'ce-source': '/hand' };
    await raw.xadd(key(topic), '*', 'body', '{"x":1}', 'h', JSON.stringify(inJson));
    await got.waitForCount(4, 10_000);
    const byId = new Map(got.items.map((m) => [m.id, m]));

    const b = byId.get('evt-binary') as Message<unknown>;
    expect(b.payload).toEqual({ order: 1 });
    expect(b.contentType).toBe('application/json');
    expect(b.cloudEvent).toMatchObject({
      specversion: '1.0',
      id: 'evt-binary',
      type: 'com.example.order.created',
      source: '/orders',
      subject: 'order-1',
      datacontenttype: 'application/json',
      extensions: { tenant: 'acme' },
    });
    expect(b.headers['ce-type']).toBe('com.example.order.created');

    const s = byId.get('evt-structured') as Message<unknown>;
    expect(s.payload).toEqual({ paid: true });
    expect(s.cloudEvent).toMatchObject({ id: 'evt-structured', type: 'com.example.order.paid', source: 'urn:shop' });

    expect(byId.get('evt-h-fields')).toMatchObject({ payload: 'hi', cloudEvent: { type: 't.hand', source: '/hand' } });
    expect(byId.get('evt-h-json')).toMatchObject({ payload: { x: 1 }, cloudEvent: { id: 'evt-h-json' } });
  });

  it("the event id is the message id: idempotency drops a redelivered event's copy", async () => {
    const topic = uniqueName('ce-idem');
    const got = collect<string>();
    await bus.subscribe(topic, async (m) => void got.push(m.id), {
      group: 'g',
      idempotency: { store: new MemoryIdempotencyStore() },
    });
    const event = new CloudEvent({ id: 'evt-twice', type: 't', source: '/s', data: { n: 1 } });
    await raw.xadd(key(topic), '*', ...asFields(HTTP.binary(event)));
    await raw.xadd(key(topic), '*', ...asFields(HTTP.binary(event)));
    await raw.xadd(key(topic), '*', ...asFields(HTTP.binary(event.cloneWith({ id: 'evt-other' }))));
    await got.waitForCount(2, 10_000);
    await sleep(300);
    expect([...got.items].sort()).toEqual(['evt-other', 'evt-twice']);
  });

  it('a busbar CloudEvent is a binary-mode event a raw reader decodes with the SDK (HTTP binding rules)', async () => {
    const topic = uniqueName('ce-out');
    const id = await bus.publish(
      topic,
      { order: 2 },
      {
        cloudEvent: {
          type: 'com.example.order.shipped',
          source: '/shipping',
          subject: 's-2',
          extensions: { tenant: 'a' },
        },
        headers: { 'x-trace': 't-9' },
      },
    );
    const entries = await raw.xrange(key(topic), '-', '+');
    expect(entries).toHaveLength(1);
    const fields = (entries[0] as [string, string[]])[1];
    const byName = new Map<string, string>();
    for (let i = 0; i + 1 < fields.length; i += 2) byName.set(fields[i] as string, fields[i + 1] as string);
    // Attributes as bare `ce-` fields (what a hand-built producer writes too), data in `body`, the content type
    // in `content-type` (the binding rule for datacontenttype), other headers as `h:` fields.
    expect(byName.get('ce-specversion')).toBe('1.0');
    expect(byName.get('ce-id')).toBe(id);
    expect(byName.get('ce-type')).toBe('com.example.order.shipped');
    expect(byName.get('ce-source')).toBe('/shipping');
    expect(byName.get('ce-subject')).toBe('s-2');
    expect(byName.get('ce-tenant')).toBe('a');
    expect(Number.isFinite(Date.parse(byName.get('ce-time') as string))).toBe(true);
    expect(byName.get('content-type')).toBe('application/json');
    expect(byName.get('h:x-trace')).toBe('t-9');
    expect([...byName.keys()].some((n) => n.startsWith('h:ce-'))).toBe(false);
    const headers: Record<string, string> = {};
    for (const [name, value] of byName) if (name.startsWith('ce-') || name === 'content-type') headers[name] = value;
    const event = HTTP.toEvent({ headers, body: byName.get('body') }) as CloudEvent;
    expect(event.id).toBe(id);
    expect(event.type).toBe('com.example.order.shipped');
    expect(event.source).toBe('/shipping');
    expect(event.subject).toBe('s-2');
    expect(event.datacontenttype).toBe('application/json');
    expect(event.data).toEqual({ order: 2 });
    expect(event.tenant).toBe('a');
    expect(event.validate()).toBe(true);
  });
});
