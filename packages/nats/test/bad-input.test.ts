import { type BusbarErrorCode, connect, silentLogger } from '@busbar/core';
import { brokerAvailable, brokerUrls, uniqueName } from '@busbar/testing';
import { connect as natsConnect } from 'nats';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { consumerName, driver, streamFor } from '../src/index.js';
import { natsOptions } from '../src/options.js';
import { serverList } from '../src/transport.js';
import { type PrivateServer, privateServer } from './server.js';

const ok = await brokerAvailable('nats');

async function code(promise: Promise<unknown>): Promise<BusbarErrorCode | string> {
  try {
    await promise;
    return 'resolved';
  } catch (error) {
    return (error as { code?: string }).code ?? String(error);
  }
}

describe.runIf(ok)('nats bad input', () => {
  let server: PrivateServer;
  beforeAll(async () => {
    server = await privateServer('max_payload: 65536');
  });
  afterAll(async () => {
    await server?.destroy();
  });

  it('rejects invalid driver options with the field path', async () => {
    const bad: Record<string, unknown>[] = [
      { streamPrefix: 'a.b' },
      { streamPrefix: 'has space' },
      { streams: { 'bad.name': ['x.#'] } },
      { streams: { 'bad*': ['x'] } },
      { streams: { 'a/b': ['x'] } },
      { streams: { 'a\\b': ['x'] } },
      { streams: { ok: ['x.>'] } },
      { streams: { ok: [] } },
      { replicas: 0 },
      { replicas: 6 },
      { storage: 'disk' },
      { ackWaitMs: 10 },
      { duplicateWindowMs: 0 },
      { servers: ['has space:4222'] },
      { nkeySeed: 'SUshort' },
      { tls: 'yes' },
      { tls: { ca: 1 } },
      { tls: { ca: 'x', bogus: true } },
      { credsFile: '' },
      { token: 't', nkeySeed: `SU${'A'.repeat(56)}` },
      { bogus: true },
    ];
    for (const extra of bad) {
      const result = await code(connect({ url: brokerUrls.nats, driver, logger: silentLogger, ...extra }));
      expect(result, JSON.stringify(extra)).toBe('BUSBAR_CONFIG');
    }
    expect(natsOptions.safeParse({ streams: { ORDERS: ['orders.#'] } }).success).toBe(true);
  });

  it('rejects bad topics, headers and oversize payloads before sending anything', async () => {
    const bus = await connect({ url: server.url, driver, logger: silentLogger });
    const topic = `${uniqueName('nbad')}.x`;
    expect(await code(bus.publish('a b', 1))).toBe('BUSBAR_INVALID_TOPIC');
    expect(await code(bus.publish('a..b', 1))).toBe('BUSBAR_INVALID_TOPIC');
    expect(await code(bus.publish('a.*', 1))).toBe('BUSBAR_INVALID_TOPIC');
    expect(await code(bus.publish('a.>', 1))).toBe('BUSBAR_INVALID_TOPIC');
    expect(await code(bus.publish('a.#', 1))).toBe('BUSBAR_INVALID_TOPIC');
    // busbar's retry subjects are its own: no topic can publish into them.
    expect(await code(bus.publish('_busbar.retry.S.c', 1))).toBe('BUSBAR_INVALID_TOPIC');
    expect(await code(bus.publish(topic, 1, { headers: { 'Content-Type': 'x' } }))).toBe('BUSBAR_INVALID_HEADER');
    // A first-segment wildcard spans several streams under the default mapping.
    expect(await code(bus.subscribe('*.x', async () => {}, { group: 'g' }))).toBe('BUSBAR_INVALID_TOPIC');
    expect(await code(bus.publish(topic, 1, { headers: { h: 'a\r\nb' } }))).toBe('BUSBAR_INVALID_HEADER');
    expect(await code(bus.publish(topic, 1, { headers: { h: 'a\nb' } }))).toBe('BUSBAR_INVALID_HEADER');
    expect(await code(bus.publish(topic, 1, { headers: { 'Nats-Msg-Id': 'x' } }))).toBe('BUSBAR_INVALID_HEADER');
    expect(await code(bus.publish(topic, 1, { headers: { 'nats-expected-stream': 'x' } }))).toBe(
      'BUSBAR_INVALID_HEADER',
    );
    // The server's max_payload (64 KiB here) comes from its INFO.
    expect(await code(bus.publish(topic, 'x'.repeat(70_000)))).toBe('BUSBAR_PAYLOAD_TOO_LARGE');
    expect(await code(bus.publishBatch(topic, [{ payload: 'ok' }, { payload: 'x'.repeat(70_000) }]))).toBe(
      'BUSBAR_PAYLOAD_TOO_LARGE',
    );
    // Nothing of the rejected publishes reached the server: the stream does not even exist yet.
    const nc = await natsConnect({ servers: `127.0.0.1:${server.port}` });
    const jsm = await nc.jetstreamManager();
    const streams = await jsm.streams.names().next();
    expect(streams).toEqual([]);
    // A message just under the limit goes through.
    expect(await code(bus.publish(topic, 'x'.repeat(60_000)))).toBe('resolved');
    expect(await jsm.streams.names().next()).toEqual([streamFor(topic, natsOptions.parse({})).name]);
    await nc.close();
    await bus.close();
  });

  it('turns seed lists into the client server list', () => {
    const ctx = (url: string, hosts: string[], servers: string[] = []) =>
      ({ url: new URL(url), hosts, options: natsOptions.parse({ servers }) }) as unknown as Parameters<
        typeof serverList
      >[0];
    expect(serverList(ctx('nats://a:4223', ['a:4223']))).toEqual(['a:4223']);
    expect(serverList(ctx('nats://a,b:4223', ['a,b:4223']))).toEqual(['a:4223', 'b:4223']);
    expect(serverList(ctx('nats://a:4222', ['a:4222', 'b:5222'], ['c:6222']))).toEqual(['a:4222', 'b:5222', 'c:6222']);
    expect(serverList(ctx('nats://a', ['a', 'b']))).toEqual(['a:4222', 'b:4222']);
  });

  it('names streams and consumers without . * > / \\', () => {
    const o = natsOptions.parse({});
    expect(streamFor('orders.created', o)).toEqual({ name: 'BUSBAR_orders', subjects: ['orders', 'orders.>'] });
    const mapped = natsOptions.parse({ streams: { SHOP: ['orders.#', 'payments.*'] } });
    expect(streamFor('orders.created.g.dlq', mapped).name).toBe('SHOP');
    expect(streamFor('payments.x', mapped).subjects).toEqual(['orders', 'orders.>', 'payments.*']);
    expect(streamFor('other.x', mapped).name).toBe('BUSBAR_other');
    for (const topic of ['a.b.c', 'a.*.c', 'a.#', 'x']) {
      expect(consumerName(topic, 'grp')).toMatch(/^[A-Za-z0-9_-]+$/);
    }
    expect(consumerName('a.b', 'g')).not.toBe(consumerName('a_b', 'g'));
  });

  it('a wrong password fails with a ConnectionError that never shows it', async () => {
    const secure = await privateServer('authorization { user: app, password: right-one }');
    try {
      const canary = 'busbar-canary-secret';
      let caught: unknown;
      try {
        await connect({ url: `nats://app:${canary}@127.0.0.1:${secure.port}`, driver, logger: silentLogger });
      } catch (error) {
        caught = error;
      }
      expect((caught as { code?: string }).code).toBe('BUSBAR_CONNECTION');
      const text = [
        String(caught),
        (caught as Error).stack,
        JSON.stringify(caught),
        String((caught as Error).cause),
      ].join('\n');
      expect(text).not.toContain(canary);
      const good = await connect({
        url: `nats://app:right-one@127.0.0.1:${secure.port}`,
        driver,
        logger: silentLogger,
      });
      expect(good.health().status).toBe('up');
      expect(JSON.stringify(good.toJSON())).not.toContain('right-one');
      await good.close();
    } finally {
      await secure.destroy();
    }
  });
});
