import { inspect } from 'node:util';
import { BusbarError } from '@busbar/core';
import { brokerAvailable, brokerUrls, createFaultProxy, sleep, uniqueName, waitFor } from '@busbar/testing';
import { afterEach, describe, expect, it } from 'vitest';
import { openBus, rawClient } from './helpers.js';

const ok = await brokerAvailable('mqtt');

describe.runIf(ok)('mqtt: topics, properties, QoS, retain, will', () => {
  const cleanup: (() => Promise<unknown>)[] = [];
  afterEach(async () => {
    for (const fn of cleanup.splice(0).reverse()) await fn().catch(() => undefined);
  });

  it('maps dots to levels under the prefix and carries headers, id, key and timestamp as user properties', async () => {
    const prefix = `${uniqueName('pfx')}/`;
    const bus = await openBus({ topicPrefix: prefix });
    const raw = await rawClient();
    cleanup.push(
      () => bus.close(),
      () => raw.client.endAsync(),
    );
    await raw.client.subscribeAsync(`${prefix}orders/created`, { qos: 1 });
    const id = await bus.publish('orders.created', { total: 1 }, { key: 'k1', headers: { tenant: 'acme' } });
    await waitFor(() => raw.packets.length === 1, 5_000, 'the raw message');
    const packet = raw.packets[0];
    expect(packet?.topic).toBe(`${prefix}orders/created`);
    expect(packet?.qos).toBe(1);
    expect(JSON.parse(String(packet?.payload))).toEqual({ total: 1 });
    expect(packet?.properties?.contentType).toBe('application/json');
    const props = packet?.properties?.userProperties as Record<string, string>;
    expect(props.tenant).toBe('acme');
    // Publish time and id share one property.
    const [ts, sentId] = (props.busbar as string).split(' ');
    expect(sentId).toBe(id);
    expect(Number(ts)).toBeGreaterThan(Date.now() - 10_000);
    expect(props['busbar-key']).toBe('k1');
    expect(Object.keys(props).sort()).toEqual(['busbar', 'busbar-key', 'tenant']);
  });

  it('reads id and time from the separate properties busbar 0.1.0 wrote', async () => {
    const topic = uniqueName('old');
    const bus = await openBus();
    const raw = await rawClient();
    cleanup.push(
      () => bus.close(),
      () => raw.client.endAsync(),
    );
    const got: { id: string; timestamp: Date; headers: Record<string, string> }[] = [];
    await bus.subscribe(topic, (m) => void got.push({ id: m.id, timestamp: m.timestamp, headers: { ...m.headers } }));
    await raw.client.publishAsync(topic, JSON.stringify({ n: 1 }), {
      qos: 1,
      properties: { userProperties: { 'busbar-id': 'old-1', 'busbar-ts': '1700000000000', tenant: 'acme' } },
    });
    await waitFor(() => got.length === 1, 5_000, 'the message');
    expect(got[0]?.id).toBe('old-1');
    expect(got[0]?.timestamp.getTime()).toBe(1700000000000);
    expect(got[0]?.headers).toEqual({ tenant: 'acme' });
  });

  it('maps * to + and # to # in subscriptions, and receives messages busbar did not publish', async () => {
    const root = uniqueName('wild');
    const bus = await openBus();
    const raw = await rawClient();
    cleanup.push(
      () => bus.close(),
      () => raw.client.endAsync(),
    );
    const one: string[] = [];
    const all: { topic: string; id: string; headers: Record<string, string> }[] = [];
    await bus.subscribe(`${root}.*`, async (m) => void one.push(m.topic));
    await bus.subscribe(
      `${root}.#`,
      async (m) => void all.push({ topic: m.topic, id: m.id, headers: { ...m.headers } }),
    );
    const props = { userProperties: { source: 'raw' } };
    await raw.client.publishAsync(`${root}/a`, '"x"', { qos: 1, properties: props });
    await raw.client.publishAsync(`${root}/a/b`, '"x"', { qos: 1, properties: props });
    await raw.client.publishAsync(`${root}/a`, '"x"', { qos: 1, properties: props });
    await waitFor(() => all.length === 3 && one.length === 2, 5_000, 'wildcard deliveries');
    await sleep(100);
    expect(one).toEqual([`${root}.a`, `${root}.a`]);
    expect(all.map((m) => m.topic).sort()).toEqual([`${root}.a`, `${root}.a`, `${root}.a.b`]);
    expect(all[0]?.headers).toEqual({ source: 'raw' });
    // No id on the wire: each message a fresh UUID, never one derived from its body (equal bodies are distinct).
    const ids = all.filter((m) => m.topic === `${root}.a`).map((m) => m.id);
    expect(ids[0]).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
    expect(ids[0]).not.toBe(ids[1]);
  });

  it('publishes with the configured QoS per topic; QoS 2 resolves on PUBCOMP', async () => {
    const root = uniqueName('qos');
    const bus = await openBus({ topicQos: { [`${root}.zero.#`]: 0, [`${root}.two`]: 2 } });
    const raw = await rawClient();
    cleanup.push(
      () => bus.close(),
      () => raw.client.endAsync(),
    );
    await raw.client.subscribeAsync(`${root}/#`, { qos: 2 });
    await bus.publish(`${root}.zero.x`, 0);
    await bus.publish(`${root}.one`, 1);
    await bus.publish(`${root}.two`, 2);
    await waitFor(() => raw.packets.length === 3, 5_000, 'three messages');
    const qos = Object.fromEntries(raw.packets.map((p) => [p.topic, p.qos]));
    expect(qos).toEqual({ [`${root}/zero/x`]: 0, [`${root}/one`]: 1, [`${root}/two`]: 2 });
  });

  it('retains messages of retainTopics for later subscribers', async () => {
    const root = uniqueName('ret');
    const bus = await openBus({ retainTopics: [`${root}.state`] });
    const raw = await rawClient();
    cleanup.push(
      () => bus.close(),
      () => raw.client.publishAsync(`${root}/state`, '', { qos: 1, retain: true }),
      () => raw.client.endAsync(),
    );
    await bus.publish(`${root}.state`, { on: true });
    await bus.publish(`${root}.other`, { on: true });
    await raw.client.subscribeAsync(`${root}/#`, { qos: 1 });
    await waitFor(() => raw.packets.length >= 1, 5_000, 'the retained message');
    await sleep(200);
    expect(raw.packets.map((p) => [p.topic, p.retain])).toEqual([[`${root}/state`, true]]);
  });

  it('publishes the last will when the connection dies, not on a clean close', async () => {
    const root = uniqueName('will');
    const target = new URL(brokerUrls.mqtt);
    const proxy = await createFaultProxy({ target: { host: target.hostname, port: Number(target.port || 1883) } });
    const raw = await rawClient();
    cleanup.push(
      () => proxy.close(),
      () => raw.client.endAsync(),
    );
    await raw.client.subscribeAsync(`${root}/#`, { qos: 1 });
    const will = { topic: `${root}.gone`, payload: 'bye', qos: 1 as const };
    const clean = await openBus({ url: proxy.url(brokerUrls.mqtt), will });
    await clean.close();
    const dying = await openBus({ url: proxy.url(brokerUrls.mqtt), will, reconnectPeriodMs: 60_000 });
    cleanup.push(() => dying.close());
    proxy.cutAll();
    await waitFor(() => raw.packets.length === 1, 5_000, 'the will');
    expect(raw.packets[0]?.topic).toBe(`${root}/gone`);
    expect(String(raw.packets[0]?.payload)).toBe('bye');
  });
});

describe.runIf(ok)('mqtt: bad input', () => {
  it('rejects topics MQTT cannot publish to with a typed error, before sending anything', async () => {
    const bus = await openBus();
    const raw = await rawClient();
    await raw.client.subscribeAsync('#', { qos: 0 });
    try {
      for (const topic of ['a.+', 'a.#', 'a.*', 'a\u0000b', 'a/b', '$SYS.x', 'a'.repeat(300)]) {
        const error = await bus.publish(topic, 1).catch((e: unknown) => e);
        expect(BusbarError.is(error, 'BUSBAR_INVALID_TOPIC'), topic).toBe(true);
      }
      await sleep(200);
      expect(raw.packets.filter((p) => p.topic.startsWith('a/') || p.topic.startsWith('a\u0000'))).toEqual([]);
    } finally {
      await bus.close();
      await raw.client.endAsync();
    }
  });

  it('rejects payloads over maxPayloadBytes before sending', async () => {
    const root = uniqueName('big');
    const bus = await openBus({ maxPayloadBytes: 1_000 });
    const raw = await rawClient();
    await raw.client.subscribeAsync(`${root}/#`, { qos: 1 });
    try {
      const error = await bus.publish(`${root}.x`, 'y'.repeat(2_000)).catch((e: unknown) => e);
      expect(BusbarError.is(error, 'BUSBAR_PAYLOAD_TOO_LARGE')).toBe(true);
      await bus.publish(`${root}.x`, 'small');
      await waitFor(() => raw.packets.length === 1, 5_000, 'the small message');
      expect(String(raw.packets[0]?.payload)).toBe('"small"');
    } finally {
      await bus.close();
      await raw.client.endAsync();
    }
  });

  it('rejects invalid options with a ConfigError naming the field', async () => {
    const cases: Record<string, unknown>[] = [
      { qos: 3 },
      { qos: -1 },
      { topicQos: { 'a.b': 5 } },
      { topicQos: { 'a/+': 1 } },
      { topicPrefix: 'a/+/' },
      { topicPrefix: '$share/' },
      { retryTopicPrefix: '$busbar/retry' },
      { topicPrefix: 'shop\t/' },
      { retryTopicPrefix: 'retry\u0085' },
      { topicPrefix: 'x\ufffe/' },
      { sessionExpirySeconds: 0 },
      { maxInflight: 0 },
      { will: { topic: 'a.#' } },
      { unknownOption: true },
    ];
    for (const options of cases) {
      const error = await openBus(options).catch((e: unknown) => e);
      expect(BusbarError.is(error, 'BUSBAR_CONFIG'), JSON.stringify(options)).toBe(true);
      const field = Object.keys(options)[0] as string;
      expect((error as Error).message, JSON.stringify(options)).toContain(field);
    }
  });

  it('never shows a password given as an option when connecting fails', async () => {
    const secret = 'busbar-canary-secret';
    const logs: string[] = [];
    const logger = {
      debug: (m: string) => void logs.push(m),
      info: (m: string) => void logs.push(m),
      warn: (m: string, f?: unknown) => void logs.push(m, inspect(f)),
      error: (m: string, f?: unknown) => void logs.push(m, inspect(f)),
    };
    const error = await openBus({
      url: 'mqtt://busbar@127.0.0.1:1',
      password: secret,
      connectTimeoutMs: 1_000,
      logger,
    }).catch((e: unknown) => e);
    expect(BusbarError.is(error, 'BUSBAR_CONNECTION')).toBe(true);
    const text = [inspect(error, { depth: 10 }), JSON.stringify(error), String((error as Error).stack), ...logs].join(
      '\n',
    );
    expect(text).not.toContain(secret);
  });
});
