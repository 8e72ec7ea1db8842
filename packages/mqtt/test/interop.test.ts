import { type Bus, codecs, defineTopic, type Logger, MemoryIdempotencyStore, type Message } from '@busbar/core';
import { brokerAvailable, brokerUrls, sleep, uniqueName, waitFor } from '@busbar/testing';
import { CloudEvent, MQTT } from 'cloudevents';
import mqtt, { type IClientPublishOptions, type IPublishPacket, type MqttClient } from 'mqtt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { headersOf, messageId } from '../src/codec.js';
import { openBus, rawClient } from './helpers.js';

const ok = await brokerAvailable('mqtt');
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;

/** Warnings a bus logged, to see core's "no id" line. */
function recordingLogger(): { logger: Logger; warnings: string[] } {
  const warnings: string[] = [];
  const none = () => undefined;
  return { logger: { debug: none, info: none, error: none, warn: (m) => void warnings.push(m) }, warnings };
}

/** Collects what a busbar subscription receives. */
async function collect(bus: Bus, topic: string, options: Record<string, unknown> = {}) {
  const got: Message<unknown>[] = [];
  await bus.subscribe(topic, async (m) => void got.push(m), { group: 'g', ...options });
  return got;
}

describe('mqtt interop: which id a message gets', () => {
  const idOf = (userProperties: Record<string, string>, correlationData?: Buffer) => {
    const packet = { topic: 't', payload: Buffer.from('x'), properties: { userProperties, correlationData } };
    return messageId(headersOf(packet as unknown as IPublishPacket), packet as unknown as IPublishPacket);
  };
  it('prefers busbar, then a CloudEvent id, then message-id, then Correlation Data, else a fresh UUID', () => {
    const all = { busbar: '1 own', specversion: '1.0', id: 'ce', 'message-id': 'mid' };
    expect(idOf(all, Buffer.from('corr'))).toEqual({ id: 'own', generated: false });
    expect(idOf({ ...all, busbar: '1 \u0001' }, Buffer.from('corr')).id).toBe('ce');
    expect(idOf({ id: 'ce', 'message-id': 'mid' }, Buffer.from('corr')).id).toBe('mid');
    expect(idOf({ 'message-id': 'x'.repeat(1_025) }, Buffer.from('corr')).id).toBe('corr');
    const none = idOf({ id: 'no-specversion' }, Buffer.alloc(0));
    expect(none.generated).toBe(true);
    expect(none.id).toMatch(UUID);
    expect(idOf({}).id).not.toBe(idOf({}).id);
  });
});

/**
 * The foreign side: raw mqtt.js clients (MQTT 5 and 3.1.1) and the CloudEvents SDK's MQTT binding, with
 * no busbar code between them and the broker.
 */
describe.runIf(ok)('mqtt interop: a message from a native client', () => {
  let bus: Bus;
  let v5: MqttClient;
  let v311: MqttClient;
  const log = recordingLogger();
  beforeAll(async () => {
    bus = await openBus({ name: uniqueName('interop'), sessionExpirySeconds: 60, logger: log.logger });
    v5 = await mqtt.connectAsync(brokerUrls.mqtt, { protocolVersion: 5 });
    v311 = await mqtt.connectAsync(brokerUrls.mqtt, { protocolVersion: 4 });
  });
  afterAll(async () => {
    await bus?.close();
    await v5?.endAsync();
    await v311?.endAsync();
  });

  it('decodes bodies by their Content Type and exposes it, from MQTT 5 and 3.1.1 publishers, QoS 0 and 1', async () => {
    const topic = uniqueName('ct');
    const got = await collect(bus, topic);
    const send5 = (body: string | Buffer, contentType: string | undefined, qos: 0 | 1 = 1) =>
      v5.publishAsync(topic, body, { qos, ...(contentType ? { properties: { contentType } } : {}) });
    await send5('{"n":1}', 'application/json');
    await send5('{"n":2}', 'application/vnd.shop.order+json', 0);
    await send5('{"n":3}', undefined);
    await send5('héllo', 'text/plain; charset=utf-8');
    await send5(Buffer.from([0xff, 0x00, 0x01]), 'application/octet-stream');
    await send5(Buffer.from([0xfe, 0x41]), undefined, 0);
    await v311.publishAsync(topic, '{"v":311}', { qos: 1 });
    await v311.publishAsync(topic, 'not json', { qos: 0 });
    await waitFor(() => got.length === 8, 5_000, 'eight messages');
    const by = (ct: string | undefined, match: (p: unknown) => boolean) =>
      got.find((m) => m.contentType === ct && match(m.payload));
    const json = (m: Message<unknown> | undefined) => m?.payload;
    expect(json(by('application/json', () => true))).toEqual({ n: 1 });
    expect(json(by('application/vnd.shop.order+json', () => true))).toEqual({ n: 2 });
    expect(got.filter((m) => m.contentType === undefined).map((m) => m.payload)).toEqual(
      expect.arrayContaining([{ n: 3 }, { v: 311 }]),
    );
    expect(by('text/plain; charset=utf-8', () => true)?.payload).toBe('héllo');
    const bytes = by('application/octet-stream', () => true)?.payload;
    expect(bytes).toBeInstanceOf(Uint8Array);
    expect([...(bytes as Uint8Array)]).toEqual([0xff, 0x00, 0x01]);
    const raw = got.filter((m) => m.contentType === undefined && m.payload instanceof Uint8Array);
    expect(raw.map((m) => Buffer.from(m.payload as Uint8Array).toString('latin1')).sort()).toEqual(
      ['\u00fe\u0041', 'not json'].sort(),
    );
    for (const m of got) {
      // No id on the wire: each a fresh UUID; no header carries the content type.
      expect(m.id).toMatch(UUID);
      expect(m.headers).toEqual({});
      expect(Math.abs(m.timestamp.getTime() - Date.now())).toBeLessThan(60_000);
    }
    expect(new Set(got.map((m) => m.id)).size).toBe(8);
  });

  it('surfaces user properties as headers, a repeated one joined', async () => {
    const topic = uniqueName('hdr');
    const got = await collect(bus, topic);
    await v5.publishAsync(topic, '"x"', {
      qos: 1,
      properties: { userProperties: { tenant: ['a', 'b'], trace: 't-1', empty: '' }, contentType: 'application/json' },
    });
    await waitFor(() => got.length === 1, 5_000, 'the message');
    expect(got[0]?.headers).toEqual({ tenant: 'a, b', trace: 't-1', empty: '' });
    expect(got[0]?.payload).toBe('x');
  });

  it('takes the id from Correlation Data or a message-id property when usable, else a fresh UUID', async () => {
    const topic = uniqueName('ids');
    const got = await collect(bus, topic);
    const send = (body: string, properties: IClientPublishOptions['properties']) =>
      v5.publishAsync(topic, body, { qos: 1, properties });
    await send('1', { correlationData: Buffer.from('corr-1') });
    await send('2', { correlationData: Buffer.from([0xff, 0xfe]) });
    await send('3', { userProperties: { 'message-id': 'mid-3' }, correlationData: Buffer.from('corr-3') });
    await send('4', { userProperties: { 'message-id': '' } });
    await send('5', { userProperties: { 'message-id': 'x'.repeat(1_025) } });
    await send('6', { correlationData: Buffer.from('a\u0001b') });
    await send('7', { userProperties: { id: 'not-a-cloudevent' } });
    await waitFor(() => got.length === 7, 5_000, 'seven messages');
    const id = (n: number) => got.find((m) => m.payload === n)?.id;
    expect(id(1)).toBe('corr-1');
    expect(id(2)).toBe(Buffer.from([0xff, 0xfe]).toString('base64'));
    expect(id(3)).toBe('mid-3');
    for (const n of [4, 5, 6, 7]) expect(id(n), String(n)).toMatch(UUID);
  });

  it('handles two foreign messages with equal bodies and no id on a group with idempotency, and warns once', async () => {
    const topic = uniqueName('idem');
    const got = await collect(bus, topic, { idempotency: { store: new MemoryIdempotencyStore() } });
    const before = log.warnings.length;
    for (const qos of [1, 1, 0] as const) await v5.publishAsync(topic, '{"same":true}', { qos });
    await waitFor(() => got.length === 3, 5_000, 'all three messages');
    await sleep(200);
    expect(got.length).toBe(3);
    expect(new Set(got.map((m) => m.id)).size).toBe(3);
    const noId = log.warnings.slice(before).filter((w) => w.includes('carry no id') && w.includes(topic));
    expect(noId.length).toBe(1);
    // A message with an id still deduplicates.
    for (let i = 0; i < 2; i++) {
      await v5.publishAsync(topic, '{"same":true}', { qos: 1, properties: { correlationData: Buffer.from('dup') } });
    }
    await waitFor(() => got.some((m) => m.id === 'dup'), 5_000, 'the message with an id');
    await sleep(300);
    expect(got.filter((m) => m.id === 'dup').length).toBe(1);
  });

  it('keeps a generated id, the content type and a foreign busbar property across a retry', async () => {
    const topic = uniqueName('retry');
    const got: Message<unknown>[] = [];
    await bus.subscribe(
      topic,
      async (m) => {
        got.push(m);
        if (m.attempt === 1) throw new Error('first attempt fails');
      },
      { group: 'g', retry: { maxAttempts: 3, initialDelayMs: 20, maxDelayMs: 20 } },
    );
    await v5.publishAsync(topic, 'plain', {
      qos: 1,
      properties: { contentType: 'text/plain', userProperties: { busbar: 'not busbar', tenant: 't' } },
    });
    await waitFor(() => got.length === 2, 5_000, 'the retry');
    const [first, second] = got as [Message<unknown>, Message<unknown>];
    expect(first.id).toMatch(UUID);
    expect(second.id).toBe(first.id);
    expect(second.attempt).toBe(2);
    expect(second.contentType).toBe('text/plain');
    expect(second.payload).toBe('plain');
    expect(second.headers).toEqual({ busbar: 'not busbar', tenant: 't' });
  });

  it('dead-letters an undecodable foreign message as bytes a plain busbar subscription reads', async () => {
    const topic = uniqueName('undecodable');
    await collect(bus, topic);
    const dead: Message<unknown>[] = [];
    await bus.subscribe(`${topic}.g.dlq`, async (m) => void dead.push(m), { group: 'reader' });
    await v5.publishAsync(topic, '{broken', { qos: 1, properties: { contentType: 'application/json' } });
    await waitFor(() => dead.length === 1, 5_000, 'the dead letter');
    const letter = dead[0] as Message<unknown>;
    expect(letter.contentType).toBe('application/octet-stream');
    expect(Buffer.from(letter.payload as Uint8Array).toString()).toBe('{broken');
    expect(letter.attempt).toBe(1);
    await sleep(300);
    expect(dead.length).toBe(1);
  });

  it('reads a CloudEvent the SDK wrote in binary mode (attributes as user properties)', async () => {
    const topic = uniqueName('ce-bin');
    const got = await collect(bus, topic, { idempotency: { store: new MemoryIdempotencyStore() } });
    const event = new CloudEvent({
      id: 'evt-1',
      source: '/orders',
      type: 'com.example.order.created',
      subject: 'o-1',
      datacontenttype: 'application/json',
      data: { orderId: 'o-1' },
    });
    const message = MQTT.binary(event);
    const userProperties: Record<string, string> = {};
    for (const [name, value] of Object.entries(message.headers)) userProperties[name] = String(value);
    const publish = () =>
      v5.publishAsync(topic, JSON.stringify(message.body), {
        qos: 1,
        properties: { userProperties, contentType: message.PUBLISH?.['Content Type'] as string },
      });
    // The same event twice: its id is the message id, so idempotency drops the second.
    await publish();
    await publish();
    await waitFor(() => got.length === 1, 5_000, 'the event');
    await sleep(300);
    expect(got.length).toBe(1);
    // The event id is a usable id: no "carry no id" warning.
    expect(log.warnings.filter((w) => w.includes(topic))).toEqual([]);
    const m = got[0] as Message<unknown>;
    expect(m.id).toBe('evt-1');
    expect(m.payload).toEqual({ orderId: 'o-1' });
    expect(m.contentType).toBe('application/json');
    expect(m.cloudEvent).toMatchObject({
      specversion: '1.0',
      id: 'evt-1',
      source: '/orders',
      type: 'com.example.order.created',
      subject: 'o-1',
      datacontenttype: 'application/json',
    });
  });

  it('reads a CloudEvent the SDK wrote in structured mode', async () => {
    const topic = uniqueName('ce-struct');
    const got = await collect(bus, topic);
    const event = new CloudEvent({ id: 'evt-2', source: 'urn:svc', type: 't.2', data: { n: 2 } });
    const message = MQTT.structured(event);
    await v5.publishAsync(topic, JSON.stringify(message.body), {
      qos: 1,
      properties: { contentType: message.PUBLISH?.['Content Type'] as string },
    });
    await waitFor(() => got.length === 1, 5_000, 'the event');
    const m = got[0] as Message<unknown>;
    expect(m.id).toBe('evt-2');
    expect(m.payload).toEqual({ n: 2 });
    expect(m.cloudEvent).toMatchObject({ id: 'evt-2', source: 'urn:svc', type: 't.2' });
    // MQTT 3.1.1 has no Content Type to say so: the envelope is an ordinary JSON payload (README).
    await v311.publishAsync(topic, JSON.stringify(message.body), { qos: 1 });
    await waitFor(() => got.length === 2, 5_000, 'the 3.1.1 copy');
    expect(got[1]?.cloudEvent).toBeUndefined();
    expect(got[1]?.payload).toMatchObject({ id: 'evt-2', specversion: '1.0', data: { n: 2 } });
  });
});

describe.runIf(ok)('mqtt interop: what a native consumer sees from busbar', () => {
  let bus: Bus;
  let raw: { client: MqttClient; packets: IPublishPacket[] };
  beforeAll(async () => {
    bus = await openBus();
    raw = await rawClient();
  });
  afterAll(async () => {
    await bus?.close();
    await raw?.client.endAsync();
  });

  async function published(topic: string, send: () => Promise<unknown>): Promise<IPublishPacket> {
    await raw.client.subscribeAsync(topic, { qos: 1 });
    await send();
    await waitFor(() => raw.packets.some((p) => p.topic === topic), 5_000, `the packet on ${topic}`);
    return raw.packets.find((p) => p.topic === topic) as IPublishPacket;
  }

  it('sends the codec content type in the Content Type property and headers as user properties', async () => {
    const base = uniqueName('out');
    const cases = [
      { topic: defineTopic(`${base}.json`), value: { a: 1 }, ct: 'application/json', body: '{"a":1}' },
      {
        topic: defineTopic<string>(`${base}.text`, undefined, { codec: codecs.string }),
        value: 'hi',
        ct: 'text/plain; charset=utf-8',
        body: 'hi',
      },
      {
        topic: defineTopic<Uint8Array>(`${base}.bytes`, undefined, { codec: codecs.bytes }),
        value: new Uint8Array([1, 2]),
        ct: 'application/octet-stream',
        body: '\u0001\u0002',
      },
    ];
    for (const c of cases) {
      const path = c.topic.name.replaceAll('.', '/');
      const packet = await published(path, () =>
        bus.publish(c.topic as never, c.value as never, { headers: { tenant: 'acme' } }),
      );
      expect(packet.properties?.contentType).toBe(c.ct);
      expect(String(packet.payload)).toBe(c.body);
      expect(packet.properties?.userProperties?.tenant).toBe('acme');
    }
  });

  it('carries a header named busbar beside its own property, both ways', async () => {
    const topic = uniqueName('named');
    const got = await collect(bus, topic);
    const packet = await published(topic, () => bus.publish(topic, 1, { headers: { busbar: 'mine', x: 'y' } }));
    expect(packet.properties?.userProperties?.['busbar-busbar']).toBe('mine');
    await waitFor(() => got.length === 1, 5_000, 'the message');
    expect(got[0]?.headers).toEqual({ busbar: 'mine', x: 'y' });
  });

  it('publishes a CloudEvent in binary mode that the SDK decodes', async () => {
    const topic = uniqueName('ce-out');
    const got = await collect(bus, topic);
    let id = '';
    const packet = await published(topic, async () => {
      id = await bus.publish(
        topic,
        { orderId: 'o-9' },
        {
          cloudEvent: { type: 'com.example.shipped', source: '/shipping', subject: 'o-9', extensions: { busbar: 'x' } },
        },
      );
    });
    const props = packet.properties?.userProperties as Record<string, string>;
    expect(props).toMatchObject({ specversion: '1.0', id, source: '/shipping', type: 'com.example.shipped' });
    expect(packet.properties?.contentType).toBe('application/json');
    const event = MQTT.toEvent({
      PUBLISH: { 'Content Type': packet.properties?.contentType },
      body: JSON.parse(String(packet.payload)),
      headers: props,
    } as never) as CloudEvent<unknown>;
    expect(event.id).toBe(id);
    expect(event.type).toBe('com.example.shipped');
    expect(event.source).toBe('/shipping');
    expect(event.subject).toBe('o-9');
    expect(event.data).toEqual({ orderId: 'o-9' });
    expect(Number.isNaN(Date.parse(event.time as string))).toBe(false);
    // And busbar reads its own CloudEvent back: same id, the extension kept apart from busbar's property.
    await waitFor(() => got.length === 1, 5_000, 'the event');
    expect(got[0]?.id).toBe(id);
    expect(got[0]?.cloudEvent).toMatchObject({ id, type: 'com.example.shipped', source: '/shipping' });
    expect(got[0]?.headers.busbar).toBe('x');
  });
});
