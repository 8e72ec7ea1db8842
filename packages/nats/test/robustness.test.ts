import { type BusbarErrorCode, connect, type Message, silentLogger } from '@busbar/core';
import { brokerAvailable, collect, freePort, sleep, uniqueName, waitFor } from '@busbar/testing';
import { connect as natsConnect, headers as natsHeaders } from 'nats';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { consumerName, driver, natsOptions } from '../src/index.js';
import { type PrivateServer, privateServer } from './server.js';

const ok = await brokerAvailable('nats');

async function failure(promise: Promise<unknown>): Promise<{ code: BusbarErrorCode | string; error: unknown }> {
  try {
    await promise;
    return { code: 'resolved', error: undefined };
  } catch (error) {
    return { code: (error as { code?: string }).code ?? String(error), error };
  }
}

describe.runIf(ok)('nats robustness', () => {
  let server: PrivateServer;
  beforeAll(async () => {
    server = await privateServer('max_payload: 65536');
  });
  afterAll(async () => {
    await server?.destroy();
  });
  const open = (extra: Record<string, unknown> = {}) =>
    connect({ url: server.url, driver, logger: silentLogger, ...extra });

  /** A publish/subscribe round trip: the bus still works. */
  async function roundTrip(bus: Awaited<ReturnType<typeof open>>, topic: string): Promise<void> {
    const got = collect<string>();
    const sub = await bus.subscribe<string>(topic, async (m) => got.push(m.payload), { group: 'after' });
    await bus.publish(topic, 'still works');
    await got.waitForCount(1, 5_000);
    expect(got.items).toEqual(['still works']);
    await sub.close();
  }

  it('garbage busbar headers from a foreign publisher fall back: valid dates, attempt 1, the subscription goes on', async () => {
    const bus = await open();
    const topic = `${uniqueName('nrg')}.foreign`;
    const got = collect<Message<unknown>>();
    await bus.subscribe(topic, async (m) => got.push(m), { group: 'g' });
    const nc = await natsConnect({ servers: `127.0.0.1:${server.port}` });
    const js = nc.jetstream();
    const garbage = ['nope', '1e300', '-1e300', 'NaN', 'Infinity', '', '12abc'];
    for (const value of garbage) {
      const h = natsHeaders();
      for (const name of ['busbar-ts', 'busbar-attempt', 'busbar-redrive', 'busbar-first-failure', 'busbar-due']) {
        h.set(name, value);
      }
      await js.publish(topic, new TextEncoder().encode(JSON.stringify(value)), { headers: h });
    }
    await got.waitForCount(garbage.length, 5_000);
    for (const m of got.items) {
      expect(m.timestamp).toBeInstanceOf(Date);
      expect(Number.isNaN(m.timestamp.getTime()), String(m.payload)).toBe(false);
      expect(Math.abs(m.timestamp.getTime() - Date.now())).toBeLessThan(60_000);
      expect(m.attempt).toBe(1);
    }
    // Garbage on the group's retry subject (another client may publish there) falls back too.
    const stream = `BUSBAR_${topic.split('.')[0]}`;
    const h = natsHeaders();
    for (const name of ['busbar-ts', 'busbar-attempt', 'busbar-due', 'busbar-id', 'busbar-topic']) h.set(name, 'nope');
    await js.publish(`_busbar.retry.${stream}.${consumerName(topic, 'g')}`, new TextEncoder().encode('"copy"'), {
      headers: h,
    });
    await got.waitForCount(garbage.length + 1, 5_000);
    const copy = got.items.at(-1) as Message<unknown>;
    expect(Number.isNaN(copy.timestamp.getTime())).toBe(false);
    expect(copy.attempt).toBeGreaterThanOrEqual(1);
    await nc.close();
    await roundTrip(bus, `${topic}.after`);
    await bus.close();
  });

  it('a message over max_payload counted in UTF-8 bytes is PayloadTooLargeError, never a raw broker error', async () => {
    const bus = await open();
    const topic = `${uniqueName('nrp')}.big`;
    // 2,000 three-byte characters: 2,000 UTF-16 units but 6,000 bytes on the wire, on top of a 60,000-byte body.
    const wide = '\u65e5'.repeat(2_000);
    const result = await failure(bus.publish(topic, 'x'.repeat(60_000), { headers: { wide } }));
    expect(result.code).toBe('BUSBAR_PAYLOAD_TOO_LARGE');
    expect((result.error as { retryable?: boolean }).retryable).toBe(false);
    await roundTrip(bus, topic);
    await bus.close();
  });

  it('records core passes on unchecked (dead letters, re-drives) get typed errors from the driver itself', async () => {
    const transport = driver.create({
      url: new URL(server.url),
      hosts: [`127.0.0.1:${server.port}`],
      options: natsOptions.parse({}),
      bus: { name: 'robustness', connectTimeoutMs: 5_000, publishTimeoutMs: 5_000, closeTimeoutMs: 5_000 },
      secrets: [],
      logger: silentLogger,
      reportState: () => {},
    });
    await transport.connect();
    const topic = `${uniqueName('nrt')}.records`;
    const record = (headers: Record<string, string>, bytes = 10) => ({
      topic,
      id: uniqueName('id'),
      key: undefined,
      headers,
      body: new Uint8Array(bytes),
      contentType: 'application/json',
      timestamp: Date.now(),
    });
    // A dead letter whose metadata is multi-byte text: 6,000 bytes in 2,000 UTF-16 units, on a 60,000-byte body.
    const grown = record({ 'busbar-dl-message': '\u65e5'.repeat(2_000) }, 60_000);
    const big = await failure(transport.publish([grown]));
    expect(big.code).toBe('BUSBAR_PAYLOAD_TOO_LARGE');
    expect((big.error as { retryable?: boolean }).retryable).toBe(false);
    // Foreign header names and values NATS cannot write.
    const unwritable: Record<string, string>[] = [
      { 'a b': 'v' },
      { 'a:b': 'v' },
      { 'caf\u00e9': 'v' },
      { h: 'a\r\nb' },
    ];
    for (const headers of unwritable) {
      const bad = await failure(transport.publish([record(headers)]));
      expect(bad.code, JSON.stringify(headers)).toBe('BUSBAR_INVALID_HEADER');
    }
    // The connection is fine afterwards.
    expect(await failure(transport.publish([record({ ok: 'yes' })]))).toEqual({ code: 'resolved', error: undefined });
    await transport.close();
    // Refused before anything is sent, still as a rejection (the call itself does not throw).
    expect((await failure(transport.publish([record({})]))).code).toBe('BUSBAR_CLOSED');
  });

  it('header names and values NATS cannot carry are InvalidHeaderError; the connection is not corrupted', async () => {
    const bus = await open();
    const topic = `${uniqueName('nrh')}.headers`;
    const bad: Record<string, string>[] = [
      { h: 'a\r\nb' },
      { h: 'a\rb' },
      { h: 'a\nPUB x 1' },
      { h: 'a\u0000b' },
      { h: 'a\u0001b' },
      { h: 'x'.repeat(70_000) },
      { ['n'.repeat(300)]: 'v' },
      { 'a b': 'v' },
      { 'a:b': 'v' },
      { 'caf\u00e9': 'v' },
      { '\u{1f600}': 'v' },
      { '': 'v' },
    ];
    for (const headers of bad) {
      const result = await failure(bus.publish(topic, 1, { headers }));
      expect(result.code, JSON.stringify(headers).slice(0, 80)).toBe('BUSBAR_INVALID_HEADER');
    }
    // What NATS can carry goes through as is.
    const got = collect<Record<string, string>>();
    await bus.subscribe(topic, async (m) => got.push({ ...m.headers }), { group: 'g' });
    const fine = { emoji: '\u{1f600} ok', empty: '', tab: 'a b', long: 'y'.repeat(4_000) };
    await bus.publish(topic, 1, { headers: fine });
    await got.waitForCount(1, 5_000);
    expect(got.items[0]).toEqual(fine);
    await roundTrip(bus, `${topic}.after`);
    await bus.close();
  });

  it('a dead-letter subject no stream will capture fails subscribe with a ConfigError naming it and the stream', async () => {
    const p = uniqueName('nrd');
    const stream = `SHOP_${p.replace(/[^A-Za-z0-9_-]/g, '_')}`;
    const bus = await open({ streams: { [stream]: [`${p}.created`] } });
    const topic = `${p}.created`;
    const result = await failure(bus.subscribe(topic, async () => {}, { group: 'g' }));
    expect(result.code).toBe('BUSBAR_CONFIG');
    expect(String((result.error as Error).message)).toContain(`${topic}.g.dlq`);
    expect(String((result.error as Error).message)).toContain(stream);
    // Without dead letters (or with a covered one) the same topic subscribes, and the bus works.
    const got = collect<number>();
    await bus.subscribe<number>(topic, async (m) => got.push(m.payload), { group: 'g', deadLetter: false });
    await bus.publish(topic, 7);
    await got.waitForCount(1, 5_000);
    expect(got.items).toEqual([7]);
    await bus.close();
    const covered = await open({ streams: { [`${stream}_all`]: [`${p}x.#`] } });
    await covered.subscribe(`${p}x.created`, async () => {}, { group: 'g' });
    await covered.close();
  });

  it('close() honours closeTimeoutMs while the server is unreachable, and leaves no connection behind', async () => {
    const http = await freePort();
    const own = await privateServer(`http: 127.0.0.1:${http}`);
    try {
      const bus = await connect({
        url: own.url,
        driver,
        logger: silentLogger,
        closeTimeoutMs: 2_000,
        reconnectTimeWaitMs: 100,
      });
      const topic = `${uniqueName('nrc')}.down`;
      await bus.subscribe(topic, async () => {}, { group: 'g' });
      await bus.subscribe(topic, async () => {});
      await bus.publish(topic, 1);
      await own.stop();
      await waitFor(() => bus.health().status !== 'up', 5_000, 'the bus to see the server gone');
      const started = Date.now();
      await bus.close();
      const took = Date.now() - started;
      expect(took).toBeLessThan(2_500);
      // The client must not keep reconnecting after close(): a restarted server sees no connection from it.
      await own.start();
      await sleep(1_500);
      const connz = (await (await fetch(`http://127.0.0.1:${http}/connz`)).json()) as { num_connections: number };
      expect(connz.num_connections).toBe(0);
    } finally {
      await own.destroy();
    }
  }, 30_000);
});
