import { createRequire } from 'node:module';
import { BusbarError, ConnectionError, InvalidHeaderError, TimeoutError } from '@busbar/core';
import { HEADER, type OutgoingRecord } from '@busbar/core/transport';
import { brokerAvailable, brokerUrls, uniqueName } from '@busbar/testing';
import { headers, type JsMsg, type Msg, type NatsConnection, connect as natsConnect } from 'nats';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ackInfo, decode, encode, headersFromNats, msgHeaders, parseHeaderBlock } from '../src/codec.js';
import { type Holder, NatsDelivery, quietly } from '../src/delivery.js';
import {
  ackSubject,
  checkClientVersion,
  FAIL_FAST_DIAL,
  headerBlock,
  installedClientVersion,
  installFailFastDial,
  msgHeaderBlock,
  TESTED_NATS,
} from '../src/internals.js';

const ok = await brokerAvailable('nats');
const enc = new TextEncoder();

async function waitUntil(check: () => boolean): Promise<void> {
  for (let i = 0; i < 100 && !check(); i++) await new Promise((r) => setTimeout(r, 20));
}

describe('the nats client version check', () => {
  it('accepts the tested range and refuses anything else with a ConfigError naming the range', () => {
    const installed = (createRequire(import.meta.url)('nats/package.json') as { version: string }).version;
    expect(installedClientVersion()).toBe(installed);
    expect(() => checkClientVersion(installed)).not.toThrow();
    expect(() => checkClientVersion(TESTED_NATS.from)).not.toThrow();
    for (const bad of ['2.29.2', TESTED_NATS.below, '3.0.0', '1.9.9', 'garbage', undefined, 2]) {
      let error: unknown;
      try {
        checkClientVersion(bad);
      } catch (e) {
        error = e;
      }
      expect(BusbarError.is(error, 'BUSBAR_CONFIG'), String(bad)).toBe(true);
      expect(String((error as Error).message)).toContain(`>=${TESTED_NATS.from} <${TESTED_NATS.below}`);
    }
  });
});

/** The same message with nats.js' internals gone: only its public API is left. */
function publicOnly(m: JsMsg): JsMsg {
  return { subject: m.subject, data: m.data, headers: m.headers, info: m.info } as unknown as JsMsg;
}

describe.runIf(ok)('nats.js internals busbar reads (pinned against the real server)', () => {
  let nc: NatsConnection;
  const stream = `BUSBAR_${uniqueName('nin')}`;
  const subject = `${stream.slice(7)}.in`;

  beforeAll(async () => {
    nc = await natsConnect({ servers: new URL(brokerUrls.nats).host });
    const jsm = await nc.jetstreamManager();
    await jsm.streams.add({ name: stream, subjects: [`${subject}`] });
  });
  afterAll(async () => {
    if (nc.isClosed()) nc = await natsConnect({ servers: new URL(brokerUrls.nats).host });
    await (await nc.jetstreamManager()).streams.delete(stream).catch(() => undefined);
    await nc.close();
  });

  /** Publishes `count` messages (the first with varied headers, the second with none) and reads them raw. */
  async function received(count: number): Promise<JsMsg[]> {
    const js = nc.jetstream();
    const h = headers();
    h.append('Nats-Msg-Id', uniqueName('id'));
    h.append('x-tag', 'a');
    h.append('x-tag', 'b');
    h.append('Content-Type', 'application/json');
    h.append('busbar-key', 'k\u00e9');
    h.append('X-Spaced', '  v  ');
    await js.publish(subject, enc.encode('{"a":1}'), { headers: h });
    for (let i = 1; i < count; i++) await js.publish(subject, enc.encode('{}'));
    const jsm = await nc.jetstreamManager();
    const name = uniqueName('c').replace(/[^A-Za-z0-9_-]/g, '_');
    const info = await jsm.consumers.add(stream, { durable_name: name, ack_policy: 'explicit' as never });
    const consumer = await nc.jetstream().consumers.get(stream, info.name);
    const out: JsMsg[] = [];
    const all = (await jsm.streams.info(stream)).state.messages;
    for (let i = 0; i < all; i++) {
      const m = await consumer.next({ expires: 2_000 });
      if (m) out.push(m);
    }
    return out.slice(-count);
  }

  it('a received message has the raw header block and the ack subject where busbar reads them', async () => {
    const [withHeaders, without] = (await received(2)) as [JsMsg, JsMsg];
    const impl = (withHeaders as unknown as { msg: { _msg: { hdr: unknown }; _rdata: unknown } }).msg;
    expect(typeof impl._msg.hdr).toBe('number');
    expect(impl._rdata).toBeInstanceOf(Uint8Array);
    const block = headerBlock(withHeaders);
    expect(block?.startsWith('NATS/1.0\r\n')).toBe(true);
    expect(block?.endsWith('\r\n\r\n')).toBe(true);
    expect(headerBlock(without)).toBe('');
    // The fast parse reads what nats.js' own parser reads.
    const fast: Record<string, string> = {};
    const slow: Record<string, string> = {};
    expect(parseHeaderBlock(block as string, fast)).toBe(headersFromNats(withHeaders, slow));
    expect(fast).toEqual(slow);
    expect(fast).toEqual({ 'x-tag': 'a, b', 'busbar-key': 'k\u00e9', 'X-Spaced': 'v' });
    // The ack subject is `reply`; the facts read from it are nats.js' own `info`.
    expect(ackSubject(withHeaders)?.startsWith('$JS.ACK.')).toBe(true);
    for (const m of [withHeaders, without]) {
      const fast = ackInfo(m);
      const { stream: s, deliveryCount, streamSequence, timestampNanos } = m.info;
      expect({ ...fast, ms: Math.floor(fast.timestampNanos / 1e6) }).toMatchObject({
        stream: s,
        deliveryCount,
        streamSequence,
        ms: Math.floor(timestampNanos / 1e6),
      });
    }
  });

  it('without those internals busbar falls back to the public API and reads the same message', async () => {
    const [withHeaders, without] = (await received(2)) as [JsMsg, JsMsg];
    for (const m of [withHeaders, without]) {
      const bare = publicOnly(m);
      expect(headerBlock(bare)).toBeUndefined();
      expect(ackSubject(bare)).toBeUndefined();
      expect(decode(bare, 42)).toEqual(decode(m, 42));
    }
    // A changed shape (a header length that is not a number, or past the data) counts as gone, too.
    const odd = { ...publicOnly(withHeaders), msg: { _msg: { hdr: '12' }, _rdata: new Uint8Array(4) } };
    expect(headerBlock(odd as unknown as JsMsg)).toBeUndefined();
    const short = { ...publicOnly(withHeaders), msg: { _msg: { hdr: 99 }, _rdata: new Uint8Array(4) } };
    expect(headerBlock(short as unknown as JsMsg)).toBeUndefined();
    const d = decode(publicOnly(withHeaders));
    expect(d.contentType).toBe('application/json');
    expect(d.key).toBe('k\u00e9');
  });

  it('a core message has its raw header block too, and nc.publish sends a pre-built block as it is', async () => {
    const core = `${uniqueName('core')}.x`;
    const got: Msg[] = [];
    const sub = nc.subscribe(core, { callback: (_e, m) => got.push(m) });
    const record: OutgoingRecord = {
      topic: core,
      id: 'id-1',
      key: 'k\u00e9',
      headers: { 'x-tag': '  a  ', [HEADER.key]: 'stale' },
      body: enc.encode('{}'),
      contentType: 'application/json',
      timestamp: Date.now(),
    };
    const native = encode(record, Date.now());
    nc.publish(core, native.data, { headers: native.headers, reply: 'r.1' });
    nc.publish(core, enc.encode('{}'));
    await nc.flush();
    await waitUntil(() => got.length === 2);
    sub.unsubscribe();
    const [withHeaders, without] = got as [Msg, Msg];
    const block = msgHeaderBlock(withHeaders);
    // What nats.js itself parses from the block busbar built: each header once, values trimmed.
    expect(block).toBe(
      `NATS/1.0\r\nNats-Msg-Id: ${core}:id-1\r\nx-tag: a\r\n${HEADER.key}: k\u00e9\r\nContent-Type: application/json\r\n\r\n`,
    );
    expect(withHeaders.headers?.get(HEADER.key)).toBe('k\u00e9');
    expect(withHeaders.headers?.values(HEADER.key)).toEqual(['k\u00e9']);
    expect(native.headerSize).toBe(Buffer.byteLength(block as string));
    expect(msgHeaderBlock(without)).toBe('');
    const fast: Record<string, string> = {};
    const slow: Record<string, string> = {};
    expect(msgHeaders(withHeaders, fast)).toBe(headersFromNats(withHeaders, slow));
    expect(fast).toEqual(slow);
    // Without the internals: nats.js' parsed headers, the same result.
    const bare = { subject: withHeaders.subject, data: withHeaders.data, headers: withHeaders.headers } as Msg;
    expect(msgHeaderBlock(bare)).toBeUndefined();
    const viaPublic: Record<string, string> = {};
    expect(msgHeaders(bare, viaPublic)).toBe(`${core}:id-1`);
    expect(viaPublic).toEqual(fast);
    // A value busbar adds that would break the line is a typed error before anything is sent.
    for (const bad of [
      { ...record, key: 'a\r\nx: y' },
      { ...record, contentType: 'text/plain\nx: y' },
    ]) {
      expect(() => encode(bad, Date.now())).toThrow(InvalidHeaderError);
    }
  });

  it('ack, nak and working() on a closed connection never throw past the driver', async () => {
    const msgs = (await received(4)) as [JsMsg, JsMsg, JsMsg, JsMsg];
    await nc.close();
    // nats.js 2.29 queues a JetStream ack without checking the connection: on a closed one it is lost (the
    // message comes back after its ack wait), not thrown. Pinned, as other versions throw (see below).
    expect(() => msgs[0].working()).not.toThrow();
    expect(quietly(() => msgs[0].nak())).toBe(true);
    const retried: string[] = [];
    const holder: Holder = {
      retry: async (d) => {
        retried.push(d.id);
      },
      settled: () => undefined,
    };
    const [acked, released, retry] = msgs.slice(1).map((m) => new NatsDelivery(m, decode(m), holder, false)) as [
      NatsDelivery,
      NatsDelivery,
      NatsDelivery,
    ];
    await expect(acked.ack()).resolves.toBeUndefined();
    await expect(released.release()).resolves.toBeUndefined();
    await expect(retry.retry({ delayMs: 0, attempt: 2, headers: {} })).resolves.toBeUndefined();
    expect(retried).toEqual([retry.id]);
  });
});

describe('nats acks that throw', () => {
  it('a client that throws from ack, nak or working() gets typed rejections or a quiet false, never a throw', async () => {
    const closed = Object.assign(new Error('closed'), { code: 'CONNECTION_CLOSED' });
    const throwing = {
      subject: 't',
      data: new Uint8Array(0),
      headers: undefined,
      info: { stream: 'S', deliveryCount: 1, streamSequence: 7, timestampNanos: 1e18 },
      ack: () => {
        throw closed;
      },
      nak: () => {
        throw closed;
      },
      working: () => {
        throw closed;
      },
    } as unknown as JsMsg;
    expect(quietly(() => throwing.working())).toBe(false);
    expect(quietly(() => throwing.nak(1_000))).toBe(false);
    const holder: Holder = { retry: async () => undefined, settled: () => undefined };
    const d = decode(throwing);
    const ack = new NatsDelivery(throwing, d, holder, false).ack();
    await expect(ack).rejects.toBeInstanceOf(ConnectionError);
    await expect(ack).rejects.toThrow(/Acking a message of/);
    await expect(new NatsDelivery(throwing, d, holder, false).release()).rejects.toBeInstanceOf(ConnectionError);
    // The retry copy is written; a failed ack after it only brings the message back (its copy is deduped).
    const retry = new NatsDelivery(throwing, d, holder, false).retry({ delayMs: 0, attempt: 2, headers: {} });
    await expect(retry).resolves.toBeUndefined();
    // A native failure writing the copy (creating the retry stream) is typed, too; the delivery stays unsettled.
    const failing: Holder = {
      retry: async () => {
        throw Object.assign(new Error('timeout'), { code: 'TIMEOUT' });
      },
      settled: () => undefined,
    };
    const unsettled = new NatsDelivery(throwing, d, failing, false);
    await expect(unsettled.retry({ delayMs: 0, attempt: 2, headers: {} })).rejects.toBeInstanceOf(TimeoutError);
    await expect(unsettled.release()).rejects.toBeInstanceOf(ConnectionError);
  });
});

describe('the fail-fast dial patch (nats.js ProtocolHandler.disconnected)', () => {
  // End to end in security.test.ts (an mTLS refusal fails at once); here the shape and the opt-in.
  it('installs once and fails only a dial that opted in, with the socket error', async () => {
    expect(installFailFastDial()).toBe(true);
    expect(installFailFastDial()).toBe(true);
    const { ProtocolHandler } = createRequire(import.meta.url)('nats/lib/nats-base-client/protocol.js') as {
      ProtocolHandler: { prototype: { disconnected(this: unknown, error: unknown): Promise<void> } };
    };
    const alert = Object.assign(new Error('alert bad certificate'), { code: 'ERR_SSL_SSLV3_ALERT_BAD_CERTIFICATE' });
    const run = async (options: Record<string, unknown>) => {
      const failed: unknown[] = [];
      const handler = {
        options: { ...options, reconnect: false },
        connectError: (e: unknown) => failed.push(e),
        servers: { getCurrentServer: () => 'nats://x' },
        dispatchStatus: () => undefined,
        _close: async () => undefined,
      };
      await ProtocolHandler.prototype.disconnected.call(handler, alert);
      return { failed, handler };
    };
    const mine = await run({ [FAIL_FAST_DIAL]: true });
    expect(mine.failed).toEqual([alert]);
    expect(mine.handler.connectError).toBeUndefined();
    const other = await run({});
    expect(other.failed).toEqual([]);
  });
});
