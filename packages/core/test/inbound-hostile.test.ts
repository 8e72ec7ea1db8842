import { type Bus, type BusbarError, codecs, defineTopic, type Message } from '@busbar/core';
import { decodeByContentType } from '@busbar/core/transport';
import { uniqueName, waitFor } from '@busbar/testing';
import { describe, expect, it } from 'vitest';
import { jsonCodec } from '../src/codec.js';
import { decodeInbound } from '../src/inbound.js';
import { memoryBuses, thrownBy } from './helpers.js';

/**
 * What services that never heard of busbar send (Java, .NET, Python, CloudEvents SDKs), as the default JSON
 * codec decodes it; each end-to-end case is followed by an ordinary message on the same subscription.
 */

const memory = memoryBuses('inh');

const utf16be = (text: string) => Buffer.from(text, 'utf16le').swap16();
const BOM_BE = Buffer.from([0xfe, 0xff]);
const BOM_LE = Buffer.from([0xff, 0xfe]);

/** Publishes `body` as a foreign producer would: these bytes, this content type, no busbar encoding. */
function foreign(bus: Bus, topic: string, body: Uint8Array | string, contentType: string, headers = {}) {
  const raw = defineTopic<Uint8Array>(topic, undefined, { codec: { ...codecs.bytes, contentType } });
  return bus.publish(raw, typeof body === 'string' ? Buffer.from(body) : body, { headers });
}

/** A subscription in group g, its dead letters, and a check that it still handles the next message. */
async function watch(bus: Bus, topic: string) {
  const handled: Message<unknown>[] = [];
  await bus.subscribe(topic, (m) => void handled.push(m), { group: 'g' });
  const dead: Message<unknown>[] = [];
  await bus.subscribeDeadLetters(topic, 'g', (m) => void dead.push(m));
  const stillWorks = async () => {
    const before = handled.length;
    await bus.publish(topic, { next: true });
    await waitFor(() => handled.length === before + 1, 2_000, 'the next message');
    expect(handled.at(-1)?.payload).toEqual({ next: true });
  };
  return { handled, dead, stillWorks };
}

const decodeError = (run: () => unknown): BusbarError => thrownBy(run, 'BUSBAR_DECODE');

describe('JSON in the charset its content type names', () => {
  it.each<[string, Uint8Array]>([
    ['application/json; charset=utf-16', Buffer.from('{"a":"é"}', 'utf16le')],
    ['Application/JSON; Charset="ISO-8859-1"', Buffer.from('{"a":"é"}', 'latin1')],
    ['application/vnd.acme+json; charset=UTF-16BE', utf16be('{"a":"é"}')],
    // Java's String.getBytes("UTF-16"): big-endian behind a byte order mark.
    ['application/json; charset=UTF-16', Buffer.concat([BOM_BE, utf16be('{"a":"é"}')])],
  ])('%s', (contentType, body) => {
    // Before: 'The encoded data was not valid for encoding utf-8', a DecodeError dead letter.
    expect(decodeByContentType(body, contentType)).toEqual({ a: 'é' });
  });

  it('UTF-8 JSON still wins, whatever charset is named; JSON in neither is a DecodeError', () => {
    expect(decodeByContentType(Buffer.from('{"a":"é"}'), 'application/json; charset=x-unknown')).toEqual({ a: 'é' });
    expect(decodeByContentType(Buffer.from('{"a":1}'), 'application/json; charset=utf-16')).toEqual({ a: 1 });
    decodeError(() => decodeByContentType(Buffer.from('{nope', 'utf16le'), 'application/json; charset=utf-16'));
    decodeError(() => decodeByContentType(Buffer.from([0xff, 0x7b]), 'application/json; charset=x-unknown'));
  });

  it('UTF-16 text from Java (big-endian behind a mark) or Python (little-endian behind one) reads as the text', () => {
    // Before: Node's little-endian 'utf-16' read Java's bytes as '\ufffe栀...'.
    expect(decodeByContentType(Buffer.concat([BOM_BE, utf16be('hé')]), 'text/plain; charset=UTF-16')).toBe('hé');
    expect(
      decodeByContentType(Buffer.concat([BOM_LE, Buffer.from('hé', 'utf16le')]), 'text/plain; charset=utf-16'),
    ).toBe('hé');
  });

  it('end to end: a UTF-16 JSON event reaches the handler, and the subscription goes on', async () => {
    const bus = await memory();
    const topic = `charset.${uniqueName('t')}`;
    const sub = await watch(bus, topic);
    await foreign(bus, topic, Buffer.from('{"order":"ü-1"}', 'utf16le'), 'application/json; charset=utf-16');
    await waitFor(() => sub.handled.length === 1, 2_000, 'the UTF-16 event');
    expect(sub.handled[0]?.payload).toEqual({ order: 'ü-1' });
    expect(sub.dead).toHaveLength(0);
    await sub.stillWorks();
  });
});

describe('structured CloudEvents: data_base64', () => {
  const envelope = (extra: Record<string, unknown>) =>
    Buffer.from(JSON.stringify({ specversion: '1.0', id: 'e-1', source: '/s', type: 't', ...extra }));
  const decode = (body: Uint8Array) => decodeInbound(jsonCodec, body, 'application/cloudevents+json', {});

  it.each<[string, unknown]>([
    ['not base64 at all', '!!!not base64!!!'],
    ['padding in the middle', 'AA=AAA'],
    ['one character too many', 'AAECA'],
    ['a number', 42],
    ['an object', { b: 1 }],
  ])('%s is a DecodeError, not other bytes', (_label, data_base64) => {
    // Before: Buffer.from skipped what it could not read and handed over e.g. <9e 8b 5b 6a c7 ba>.
    const error = decodeError(() => decode(envelope({ data_base64 })));
    expect(error.message).toContain('data_base64');
  });

  it('base64 as encoders write it is read: padded or not, URL-safe, MIME line breaks; null is no data', () => {
    expect(decode(envelope({ data_base64: 'AAECAwQ=' })).payload).toEqual(Buffer.from([0, 1, 2, 3, 4]));
    expect(decode(envelope({ data_base64: 'AAECAwQ' })).payload).toEqual(Buffer.from([0, 1, 2, 3, 4]));
    expect(decode(envelope({ data_base64: '-_8=' })).payload).toEqual(Buffer.from([0xfb, 0xff]));
    expect(decode(envelope({ data_base64: 'AAEC\r\nAwQ=' })).payload).toEqual(Buffer.from([0, 1, 2, 3, 4]));
    expect(decode(envelope({ data_base64: '' })).payload).toEqual(Buffer.alloc(0));
    expect(decode(envelope({ data: { n: 1 }, data_base64: null })).payload).toEqual({ n: 1 });
  });

  it('end to end: dead-lettered once as a DecodeError, the handler never runs, the next message is handled', async () => {
    const bus = await memory();
    const topic = `ce.${uniqueName('b64')}`;
    const sub = await watch(bus, topic);
    await foreign(bus, topic, envelope({ data_base64: 'not base64!' }), 'application/cloudevents+json');
    await waitFor(() => sub.dead.length === 1, 2_000, 'the dead letter');
    expect(sub.dead[0]?.deadLetter?.errorName).toBe('DecodeError');
    expect(sub.dead[0]?.deadLetter?.attempts).toBe(0);
    expect(sub.handled).toHaveLength(0);
    await sub.stillWorks();
  });
});

describe('CloudEvent ids follow the rule for ids from the wire', () => {
  const attributes = { 'ce-specversion': '1.0', 'ce-source': '/s', 'ce-type': 't' };

  it('binary mode: an id over 1 KB is not the message id (the message is read without its CloudEvent)', async () => {
    const bus = await memory();
    const topic = `ce.${uniqueName('id')}`;
    const sub = await watch(bus, topic);
    const long = 'x'.repeat(2_000);
    const id = await bus.publish(topic, { n: 1 }, { headers: { ...attributes, 'ce-id': long } });
    await waitFor(() => sub.handled.length === 1, 2_000, 'the message');
    // Before: message.id was the 2,000-character ce-id (idempotency keys, logs, dead letters took it).
    expect(sub.handled[0]?.id).toBe(id);
    expect(sub.handled[0]?.cloudEvent).toBeUndefined();
    expect(sub.handled[0]?.payload).toEqual({ n: 1 });
    await sub.stillWorks();
  });

  it.each([
    ['a line feed', 'evt\n1'],
    ['a NUL', 'evt\u00001'],
    ['2 KB', 'e'.repeat(2_048)],
  ])('structured mode: an id with %s is no CloudEvent (a DecodeError)', (_label, id) => {
    const body = Buffer.from(JSON.stringify({ specversion: '1.0', id, source: '/s', type: 't', data: 1 }));
    decodeError(() => decodeInbound(jsonCodec, body, 'application/cloudevents+json', {}));
    // A usable one is read as ever.
    const ok = Buffer.from(JSON.stringify({ specversion: '1.0', id: 'evt-1', source: '/s', type: 't', data: 1 }));
    expect(decodeInbound(jsonCodec, ok, 'application/cloudevents+json', {}).cloudEvent?.id).toBe('evt-1');
  });
});

describe('structured CloudEvent extensions', () => {
  it('keeps strings, numbers and booleans; an object 100,000 arrays deep is no attribute (was a RangeError)', async () => {
    const bus = await memory();
    const topic = `ce.${uniqueName('ext')}`;
    const sub = await watch(bus, topic);
    const depth = 100_000;
    const body =
      '{"specversion":"1.0","id":"evt-deep","source":"/s","type":"t","data":{"n":1},' +
      `"tenant":"acme","count":3,"flag":true,"nothing":null,"deep":${'['.repeat(depth)}${']'.repeat(depth)}}`;
    await foreign(bus, topic, body, 'application/cloudevents+json');
    // Before: JSON.stringify of `deep` threw a RangeError: dead-lettered, and every dead-letter reader failed on it
    // again and again.
    await waitFor(() => sub.handled.length === 1, 2_000, 'the event');
    expect(sub.handled[0]?.id).toBe('evt-deep');
    expect(sub.handled[0]?.payload).toEqual({ n: 1 });
    expect(sub.handled[0]?.cloudEvent?.extensions).toEqual({ tenant: 'acme', count: '3', flag: 'true' });
    expect(sub.dead).toHaveLength(0);
    await sub.stillWorks();
  });
});

describe('a topic with an explicit codec and a structured CloudEvent', () => {
  const envelope = Buffer.from(
    JSON.stringify({ specversion: '1.0', id: 'ce-1', source: '/s', type: 't', data: { n: 1 } }),
  );
  const structured = 'application/cloudevents+json';

  it('decodes the whole body with the codec (a bytes handler got the data object), attributes beside it', () => {
    const bytes = decodeInbound(codecs.bytes as never, envelope, structured, {});
    expect(bytes.payload).toBeInstanceOf(Uint8Array);
    expect(Buffer.from(bytes.payload as Uint8Array).equals(envelope)).toBe(true);
    expect(bytes.cloudEvent?.id).toBe('ce-1');
    const text = decodeInbound(codecs.string as never, envelope, structured, {});
    expect(text.payload).toBe(envelope.toString());
    expect(text.cloudEvent?.type).toBe('t');
  });

  it("a body that is no CloudEvent is the codec's to judge, not a DecodeError", () => {
    const body = Buffer.from('not json at all');
    const decoded = decodeInbound(codecs.string as never, body, structured, {});
    expect(decoded.payload).toBe('not json at all');
    expect(decoded.cloudEvent).toBeUndefined();
  });
});
