import { HEADER } from '@busbar/core/transport';
import { type JsMsg, headers as natsHeaders } from 'nats';
import { describe, expect, it } from 'vitest';
import { percentDecode, percentEncode, readCloudEvent } from '../src/cloudevents.js';
import { ackInfo, type Decoded, MSG_ID, parseHeaderBlock, usableId } from '../src/codec.js';
import { fromRetryCopy, retryCopy } from '../src/retry.js';

/** What busbar read through nats.js' own decoder before the fast path (the oracle). */
function viaNats(block: string): { msgId: string | undefined; out: Record<string, string> } {
  const h = natsHeaders();
  const decoded = (h.constructor as unknown as { decode(a: Uint8Array): typeof h }).decode(
    new TextEncoder().encode(block),
  );
  const out: Record<string, string> = {};
  let msgId: string | undefined;
  for (const [name, values] of decoded) {
    if (name === MSG_ID) msgId = values[0];
    else if (name.toLowerCase() === 'content-type') continue;
    else if (!name.startsWith('Nats-')) out[name] = values.join(', ');
  }
  return { msgId, out };
}

describe('NATS header block', () => {
  const blocks = [
    'NATS/1.0\r\n\r\n',
    'NATS/1.0\r\nNats-Msg-Id: orders.created:abc\r\n\r\n',
    'NATS/1.0\r\nNats-Msg-Id: t:1\r\nbusbar-key: k-1\r\nX-Trace:  spaced value \r\n\r\n',
    'NATS/1.0\r\na: 1\r\na: 2\r\nb:\r\nc: é ü 日本\r\nNats-Expected-Stream: s\r\n\r\n',
    'NATS/1.0\r\nx: a:b:c\r\nnot a header line\r\ny: 1\r\n\r\n',
    'NATS/1.0\r\nContent-Type: text/plain\r\ncontent-type: x\r\nz: 2\r\n\r\n',
  ];
  for (const block of blocks) {
    it(`reads ${JSON.stringify(block)} as nats.js does`, () => {
      const out: Record<string, string> = {};
      const msgId = parseHeaderBlock(block, out);
      expect({ msgId, out }).toEqual(viaNats(block));
    });
  }
});

describe('NATS ack subject', () => {
  const msg = (reply: string) => ({ reply, info: { stream: 'via-nats-info' } }) as unknown as JsMsg;
  it('reads stream, delivery count, sequence and time from both subject formats', () => {
    const v1 = ackInfo(msg('$JS.ACK.ORDERS.c1.3.42.40.1700000000123456789.7'));
    expect(v1).toMatchObject({ stream: 'ORDERS', deliveryCount: 3, streamSequence: 42 });
    expect(Math.floor(v1.timestampNanos / 1e6)).toBe(1700000000123);
    const v2 = ackInfo(msg('$JS.ACK.hub.acchash.ORDERS.c1.1.9.9.1700000000123456789.0.xyz'));
    expect(v2).toMatchObject({ stream: 'ORDERS', deliveryCount: 1, streamSequence: 9 });
  });

  it("leaves anything else to nats.js' own parser", () => {
    expect(ackInfo(msg('_INBOX.abc')).stream).toBe('via-nats-info');
    expect(ackInfo(msg('$JS.ACK.a.b.c')).stream).toBe('via-nats-info');
  });
});

describe('CloudEvents NATS binding header values', () => {
  it("percent-encodes as the binding's example says, and back", () => {
    const value = 'Euro \u20ac \u{1f600}';
    expect(percentEncode(value)).toBe('Euro%20%E2%82%AC%20%F0%9F%98%80');
    expect(percentDecode('Euro%20%E2%82%AC%20%F0%9F%98%80')).toBe(value);
    expect(percentEncode('a"b%c')).toBe('a%22b%25c');
    expect(percentEncode('/plain-ASCII_~!')).toBe('/plain-ASCII_~!');
    for (const text of ['', '100%', '%25', 'tab\there', '\u00fc "q"', 'a%2541']) {
      expect(percentDecode(percentEncode(text))).toBe(text);
    }
  });

  it('decodes lower-case hex, unnecessary escapes and double-quoted values; keeps what does not decode', () => {
    expect(percentDecode('%c3%bc%41')).toBe('\u00fcA');
    expect(percentDecode('"a \\"quoted\\" value"')).toBe('a "quoted" value');
    // An overlong encoding of a space (invalid UTF-8) and a stray '%' are not decoded: kept as they came.
    expect(percentDecode('%C0%A0')).toBe('%C0%A0');
    expect(percentDecode('100%')).toBe('100%');
  });

  it('reads a binary event in place: values decoded, ce-datacontenttype as the content type', () => {
    const headers: Record<string, string> = {
      'ce-specversion': '1.0',
      'CE-Subject': 'a%20b',
      'ce-datacontenttype': 'text/plain;%20charset=utf-8',
      other: 'x%20y',
    };
    expect(readCloudEvent(headers, 'application/json')).toBe('text/plain; charset=utf-8');
    expect(headers).toEqual({ 'ce-specversion': '1.0', 'CE-Subject': 'a b', other: 'x%20y' });
    // Not an event (no specversion), or a structured one: left alone.
    const plain = { 'ce-subject': 'a%20b' };
    expect(readCloudEvent(plain, undefined)).toBeUndefined();
    expect(plain).toEqual({ 'ce-subject': 'a%20b' });
    const structured = { 'ce-specversion': '1.0', 'ce-subject': 'a%20b' };
    expect(readCloudEvent(structured, 'application/cloudevents+json')).toBe('application/cloudevents+json');
    expect(structured['ce-subject']).toBe('a%20b');
  });
});

describe('message ids from the wire', () => {
  it('takes an empty one, one over 1 KB (in UTF-8 bytes) or one with control characters as none', () => {
    expect(usableId('order-42')).toBe('order-42');
    expect(usableId('x'.repeat(1_024))).toBe('x'.repeat(1_024));
    for (const bad of [undefined, '', 'x'.repeat(1_025), '\u65e5'.repeat(400), 'a\u0000b', 'a\tb', 'a\u007fb']) {
      expect(usableId(bad), JSON.stringify(bad)?.slice(0, 20)).toBeUndefined();
    }
  });
});

describe('retry copies', () => {
  const decoded = (headers: Record<string, string>): Decoded => ({
    id: 'S:1',
    key: undefined,
    headers,
    timestamp: 1_000,
    attempt: 1,
    contentType: undefined,
    stream: 'S',
    sequence: 1,
    epoch: undefined,
  });

  it('write the due time under the registry name and read it back, out of the headers core sees', () => {
    const source = {
      id: 'm-1',
      topic: 'orders.created',
      key: 'k',
      body: new Uint8Array(0),
      timestamp: 500,
      contentType: undefined,
      position: 'BUSBAR_orders:9',
    };
    const copy = retryCopy('_busbar.retry.x', source, { delayMs: 250, attempt: 2, headers: { a: '1' } }, 10_000);
    expect(copy.headers.get(HEADER.due)).toBe('10250');
    const read: Record<string, string> = {};
    for (const [name, values] of copy.headers) read[name] = values.join(', ');
    const facts = fromRetryCopy(decoded(read), '_busbar.retry.x');
    expect(facts).toMatchObject({ id: 'm-1', topic: 'orders.created', attempt: 2, timestamp: 500, due: 10_250 });
    expect(Object.keys(facts.headers).filter((h) => h.startsWith('busbar-') && h !== HEADER.key)).toEqual([]);
  });

  it('a copy written before the header registry names its source position the old way: read as the new name', () => {
    const old = fromRetryCopy(decoded({ 'busbar-dl-seq': 'BUSBAR_o:5', x: '1' }), 's');
    expect(old.headers).toEqual({ [HEADER.sourceOffset]: 'BUSBAR_o:5', x: '1' });
    const both = fromRetryCopy(decoded({ 'busbar-dl-seq': 'BUSBAR_o:5', [HEADER.sourceOffset]: 'BUSBAR_o:6' }), 's');
    expect(both.headers).toEqual({ [HEADER.sourceOffset]: 'BUSBAR_o:6' });
  });
});
