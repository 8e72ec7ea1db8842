import { type JsMsg, headers as natsHeaders } from 'nats';
import { describe, expect, it } from 'vitest';
import { ackInfo, MSG_ID, parseHeaderBlock } from '../src/codec.js';

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
