import {
  type Bus,
  BusbarError,
  codecs,
  connect,
  defineTopic,
  type Logger,
  MemoryIdempotencyStore,
  type Message,
  silentLogger,
} from '@busbar/core';
import { addWireHeader, type Delivery, decodeByContentType, defineDriver } from '@busbar/core/transport';
import { uniqueName, waitFor } from '@busbar/testing';
import { afterEach, describe, expect, it } from 'vitest';
import { z } from 'zod';

const open: Bus[] = [];
afterEach(async () => {
  await Promise.all(open.splice(0).map((b) => b.close()));
});

async function memory(logger: Logger = silentLogger): Promise<Bus> {
  const bus = await connect({ url: `memory://${uniqueName('in')}`, logger });
  open.push(bus);
  return bus;
}

const bytes = (text: string) => new TextEncoder().encode(text);

/** A driver whose every subscription is handed `deliveries` at once (fields not given: a plain first delivery). */
function deliveringDriver(name: string, deliveries: () => Partial<Delivery>[]) {
  return defineDriver({
    name,
    schemes: [name],
    options: z.object({}),
    create: () => ({
      capabilities: { durableGroups: true, ordering: true, wildcards: false },
      maxPayloadBytes: 1_000,
      connect: async () => undefined,
      publish: async () => undefined,
      declareGroup: async () => undefined,
      close: async () => undefined,
      subscribe: async (_spec, callbacks) => {
        for (const fields of deliveries()) {
          callbacks.onDelivery({
            id: 'm',
            topic: 'a.b',
            key: undefined,
            headers: {},
            body: bytes('1'),
            timestamp: Date.now(),
            attempt: 1,
            raw: undefined,
            ack: async () => undefined,
            retry: async () => undefined,
            release: async () => undefined,
            ...fields,
          });
        }
        return { stop: async () => undefined, close: async () => undefined };
      },
    }),
  });
}

describe('decoding by content type', () => {
  it.each<[string | undefined, string, unknown]>([
    ['application/json', '{"a":1}', { a: 1 }],
    ['application/json; charset=utf-8', '[1]', [1]],
    ['application/vnd.acme+json', '"x"', 'x'],
    ['text/plain', 'hello', 'hello'],
    ['text/csv; charset=utf-8', 'a,b', 'a,b'],
    ['text/plain; charset=iso-8859-1', '\u00e9', '\u00c3\u00a9'],
    [undefined, '{"a":1}', { a: 1 }],
    [undefined, '', null],
  ])('%s', (type, body, expected) => {
    expect(decodeByContentType(bytes(body), type)).toEqual(expected);
  });

  it.each<[string | undefined, string]>([
    [undefined, '{not json'],
    ['application/octet-stream', '{"a":1}'],
    ['application/x-protobuf', '\u0001\u0002'],
    ['image/png', 'png'],
  ])('%s is handed over as bytes', (type, body) => {
    const out = decodeByContentType(bytes(body), type);
    expect(out).toBeInstanceOf(Uint8Array);
    expect(new TextDecoder().decode(out as Uint8Array)).toBe(body);
  });

  it('a body that says it is JSON and is not is a DecodeError', () => {
    let error: unknown;
    try {
      decodeByContentType(bytes('{nope'), 'application/json');
    } catch (e) {
      error = e;
    }
    expect(BusbarError.is(error, 'BUSBAR_DECODE')).toBe(true);
  });

  it('text, bytes and JSON from other producers reach a plain subscription as what they are', async () => {
    const bus = await memory();
    const topic = `ct.${uniqueName('t')}`;
    const seen: Message<unknown>[] = [];
    await bus.subscribe(topic, (m) => void seen.push(m), { group: 'g' });
    await bus.publish(defineTopic<string>(topic, undefined, { codec: codecs.string }), 'plain text');
    await bus.publish(defineTopic<Uint8Array>(topic, undefined, { codec: codecs.bytes }), bytes('\u0000\u0001'));
    await bus.publish(topic, { json: true });
    await waitFor(() => seen.length === 3, 2_000, 'three messages');
    expect(seen.map((m) => m.payload)).toEqual(['plain text', bytes('\u0000\u0001'), { json: true }]);
    expect(seen.map((m) => m.contentType)).toEqual([
      'text/plain; charset=utf-8',
      'application/octet-stream',
      'application/json',
    ]);
  });

  it('a typed topic still validates whatever the content type gave', async () => {
    const bus = await memory();
    const name = `ct.${uniqueName('typed')}`;
    const schema = {
      '~standard': {
        version: 1 as const,
        vendor: 't',
        validate: (v: unknown) => (typeof v === 'string' ? { value: v } : { issues: [{ message: 'not a string' }] }),
      },
    };
    const handled: unknown[] = [];
    await bus.subscribe(defineTopic(name, schema), (m) => void handled.push(m.payload), { group: 'g' });
    const dead: Message<unknown>[] = [];
    await bus.subscribeDeadLetters(name, 'g', (m) => void dead.push(m));
    await bus.publish(defineTopic<Uint8Array>(name, undefined, { codec: codecs.bytes }), bytes('raw'));
    await bus.publish(defineTopic<string>(name, undefined, { codec: codecs.string }), 'fine');
    await waitFor(() => dead.length === 1 && handled.length === 1, 2_000, 'one dead letter, one handled');
    expect(handled).toEqual(['fine']);
    expect(dead[0]?.deadLetter?.errorName).toBe('ValidationError');
  });

  it('the dead letter of an undecodable message is readable by a plain subscription (no dead letter of a dead letter)', async () => {
    const bus = await memory();
    const topic = `ct.${uniqueName('dl')}`;
    await bus.subscribe(topic, () => undefined, { group: 'g' });
    const letters: Message<unknown>[] = [];
    await bus.subscribe(`${topic}.g.dlq`, (m) => void letters.push(m), { group: 'reader' });
    const lying = defineTopic<string>(topic, undefined, {
      codec: { ...codecs.string, contentType: 'application/json' },
    });
    await bus.publish(lying, '{broken');
    await waitFor(() => letters.length === 1, 2_000, 'the dead letter on a plain subscription');
    expect(new TextDecoder().decode(letters[0]?.payload as Uint8Array)).toBe('{broken');
    expect(letters[0]?.deadLetter?.errorName).toBe('DecodeError');
    expect(letters[0]?.contentType).toBe('application/octet-stream');
    // The reader handled it: nothing was dead-lettered a second time.
    const twice: Message<unknown>[] = [];
    await bus.subscribeDeadLetters(`${topic}.g.dlq`, 'reader', (m) => void twice.push(m));
    await new Promise((r) => setTimeout(r, 200));
    expect(twice).toHaveLength(0);
  });
});

describe('CloudEvents', () => {
  it('reads binary mode: the event id is the message id, attributes on message.cloudEvent, data by content type', async () => {
    const bus = await memory();
    const topic = `ce.${uniqueName('bin')}`;
    const seen: Message<unknown>[] = [];
    await bus.subscribe(topic, (m) => void seen.push(m), {
      group: 'g',
      idempotency: { store: new MemoryIdempotencyStore() },
    });
    const headers = {
      'ce-specversion': '1.0',
      'ce-id': 'evt-1',
      'ce-source': '/orders',
      'ce-type': 'com.example.order.created',
      'ce-subject': 'o-1',
      'ce-time': '2026-01-01T00:00:00Z',
      'ce-tenant': 'acme',
    };
    await bus.publish(topic, { orderId: 'o-1' }, { headers });
    // The same event again (a redelivery from a foreign producer): idempotency works on the event id.
    await bus.publish(topic, { orderId: 'o-1' }, { headers });
    await waitFor(() => seen.length >= 1, 2_000, 'the event');
    await new Promise((r) => setTimeout(r, 100));
    expect(seen).toHaveLength(1);
    const m = seen[0] as Message<unknown>;
    expect(m.id).toBe('evt-1');
    expect(m.payload).toEqual({ orderId: 'o-1' });
    expect(m.cloudEvent).toEqual({
      specversion: '1.0',
      id: 'evt-1',
      source: '/orders',
      type: 'com.example.order.created',
      subject: 'o-1',
      time: '2026-01-01T00:00:00Z',
      datacontenttype: 'application/json',
      extensions: { tenant: 'acme' },
    });
  });

  it('reads structured mode (application/cloudevents+json), data_base64 too', async () => {
    const bus = await memory();
    const topic = `ce.${uniqueName('str')}`;
    const seen: Message<unknown>[] = [];
    await bus.subscribe(topic, (m) => void seen.push(m), { group: 'g' });
    const structured = defineTopic<unknown>(topic, undefined, {
      codec: { ...codecs.json, contentType: 'application/cloudevents+json; charset=utf-8' },
    });
    await bus.publish(structured, {
      specversion: '1.0',
      id: 'evt-2',
      source: 'urn:x',
      type: 't',
      datacontenttype: 'application/json',
      data: { n: 1 },
      traceparent: '00-abc',
    });
    await bus.publish(structured, { specversion: '1.0', id: 'evt-3', source: 'urn:x', type: 't', data_base64: 'AAE=' });
    await waitFor(() => seen.length === 2, 2_000, 'two events');
    expect(seen[0]?.id).toBe('evt-2');
    expect(seen[0]?.payload).toEqual({ n: 1 });
    expect(seen[0]?.cloudEvent?.extensions).toEqual({ traceparent: '00-abc' });
    expect(seen[1]?.payload).toEqual(Buffer.from([0, 1]));
  });

  it('writes binary mode from a publish option or the topic, and reads it back', async () => {
    const bus = await memory();
    const name = `ce.${uniqueName('pub')}`;
    const seen: Message<unknown>[] = [];
    await bus.subscribe(name, (m) => void seen.push(m), { group: 'g' });
    const topic = defineTopic<{ n: number }>(name, undefined, {
      cloudEvent: { type: 'com.example.n', source: '/busbar' },
    });
    const id = await bus.publish(topic, { n: 1 }, { cloudEvent: { subject: 's', extensions: { tenant: 'acme' } } });
    await waitFor(() => seen.length === 1, 2_000, 'the event');
    const m = seen[0] as Message<unknown>;
    expect(m.id).toBe(id);
    expect(m.cloudEvent?.type).toBe('com.example.n');
    expect(m.cloudEvent?.source).toBe('/busbar');
    expect(m.cloudEvent?.subject).toBe('s');
    expect(m.cloudEvent?.extensions).toEqual({ tenant: 'acme' });
    expect(m.headers['ce-id']).toBe(id);
    expect(Number.isNaN(Date.parse(m.cloudEvent?.time ?? ''))).toBe(false);
  });

  it('rejects a CloudEvent publish without type or source, or with a bad extension name', async () => {
    const bus = await memory();
    for (const cloudEvent of [
      { type: 't' },
      { source: 's' },
      { type: 't', source: 's', extensions: { 'Bad-Name': 'x' } },
    ]) {
      const error = await bus.publish('ce.x', 1, { cloudEvent }).catch((e: unknown) => e);
      expect(BusbarError.is(error, 'BUSBAR_CONFIG')).toBe(true);
    }
  });
});

describe('messages without an id', () => {
  it('says once per subscription that idempotency cannot deduplicate them', async () => {
    const warnings: string[] = [];
    // A driver for a broker with no id field: every delivery has an id the driver made up.
    const foreign = deliveringDriver('foreign', () =>
      [0, 1, 2].map((i) => ({ id: `generated-${i}`, idGenerated: true })),
    );
    const bus = await connect({
      url: 'foreign://x',
      driver: foreign,
      logger: { ...silentLogger, warn: (m) => void warnings.push(m) },
    });
    open.push(bus);
    const handled: string[] = [];
    await bus.subscribe('a.b', (m) => void handled.push(m.id), {
      group: 'g',
      idempotency: { store: new MemoryIdempotencyStore() },
    });
    await waitFor(() => handled.length === 3, 2_000, 'three messages');
    expect(warnings.filter((w) => w.includes('idempotency cannot deduplicate'))).toHaveLength(1);
  });
});

describe('foreign header names', () => {
  it('a __proto__ header beside busbar headers stays a header', async () => {
    const wire: Record<string, string> = {};
    addWireHeader(wire, '__proto__', 'x');
    addWireHeader(wire, 'busbar-attempt', '2');
    addWireHeader(wire, 'a', 'b');
    const oneMessage = deliveringDriver('one', () => [{ id: 'm-1', headers: wire, attempt: 2 }]);
    const bus = await connect({ url: 'one://x', driver: oneMessage, logger: silentLogger });
    open.push(bus);
    const seen: Message<unknown>[] = [];
    await bus.subscribe('a.b', (m) => void seen.push(m), { group: 'g' });
    await waitFor(() => seen.length === 1, 2_000, 'the message');
    const headers = seen[0]?.headers as Record<string, string>;
    expect(Object.getPrototypeOf(headers)).toBe(Object.prototype);
    expect(Object.keys(headers)).toEqual(['__proto__', 'a']);
    expect(Object.getOwnPropertyDescriptor(headers, '__proto__')?.value).toBe('x');
  });
});

describe('foreign busbar headers', () => {
  it('a due time further ahead than any publish can ask for is not waited for; a lone dl-pending runs the handler', async () => {
    const now = Date.now();
    const tenYears = String(now + 10 * 365 * 24 * 3600_000);
    const far = deliveringDriver('far', () =>
      (
        [
          ['ten-years', { 'busbar-deliver-at': tenYears }],
          ['not-a-number', { 'busbar-deliver-at': 'soon' }],
          // Only busbar's own refused dead letter (its failure recorded) skips the handler.
          ['pending-alone', { 'busbar-dl-pending': '1' }],
        ] as const
      ).map(([id, headers]) => ({ id, headers, timestamp: now })),
    );
    const bus = await connect({ url: 'far://x', driver: far, logger: silentLogger });
    open.push(bus);
    const handled: string[] = [];
    await bus.subscribe('a.b', (m) => void handled.push(m.id), { group: 'g' });
    await waitFor(() => handled.length === 3, 2_000, 'every message now');
    expect(handled.sort()).toEqual(['not-a-number', 'pending-alone', 'ten-years']);
  });
});
