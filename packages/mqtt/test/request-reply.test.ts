import { getEventListeners } from 'node:events';
import { type Bus, BusbarError, type RemoteError, silentLogger } from '@busbar/core';
import { brokerAvailable, brokerUrls, createFaultProxy, sleep, uniqueName, waitFor } from '@busbar/testing';
import mqtt, { type IPublishPacket, type MqttClient } from 'mqtt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { driver, mqttOptions } from '../src/index.js';
import type { MqttTransport } from '../src/transport.js';
import { openBus } from './helpers.js';

const ok = await brokerAvailable('mqtt');

/** A raw MQTT 5 requester: its own response topic, requests matched by correlation data. */
async function rawRequester(client: MqttClient) {
  const replyTopic = `raw-replies/${uniqueName('r')}`;
  const replies: IPublishPacket[] = [];
  client.on('message', (topic, _payload, packet) => {
    if (topic === replyTopic) replies.push(packet);
  });
  await client.subscribeAsync(replyTopic, { qos: 1 });
  const send = (path: string, body: string, correlationData: Buffer) =>
    client.publishAsync(path, body, {
      qos: 1,
      properties: { responseTopic: replyTopic, correlationData, contentType: 'application/json' },
    });
  return { replyTopic, replies, send };
}

describe.runIf(ok)('mqtt request/reply: interop with raw mqtt.js (MQTT 5)', () => {
  let requester: Bus;
  let responder: Bus;
  let raw: MqttClient;
  beforeAll(async () => {
    requester = await openBus({ name: uniqueName('rr-req') });
    responder = await openBus({ name: uniqueName('rr-res') });
    raw = await mqtt.connectAsync(brokerUrls.mqtt, { protocolVersion: 5 });
  });
  afterAll(async () => {
    await requester?.close();
    await responder?.close();
    await raw?.endAsync(true);
  });

  it('a raw request (Response Topic + Correlation Data) is answered by a busbar responder, once', async () => {
    const topic = uniqueName('rr.raw-in');
    const ids: string[] = [];
    await responder.respond(
      topic,
      (m) => {
        ids.push(m.id);
        return { echo: m.payload, header: m.headers.who };
      },
      { group: 'svc' },
    );
    const { replies, send } = await rawRequester(raw);
    // Correlation data is bytes, not necessarily text.
    const correlation = Buffer.from([0xff, 0x00, 0x10, 0x80]);
    await send(topic.replaceAll('.', '/'), JSON.stringify({ n: 1 }), correlation);
    await waitFor(() => replies.length === 1, 5_000, 'the reply');
    const reply = replies[0] as IPublishPacket;
    expect(Buffer.from(reply.properties?.correlationData ?? []).equals(correlation)).toBe(true);
    expect(reply.properties?.contentType).toBe('application/json');
    expect(JSON.parse(String(reply.payload))).toEqual({ echo: { n: 1 } });
    // No busbar id on the wire: the id comes from the Correlation Data (base64 as it is no UTF-8).
    expect(ids).toEqual([correlation.toString('base64')]);

    // The same request again (a requester's QoS 1 re-send after a lost PUBACK) is not answered twice.
    await send(topic.replaceAll('.', '/'), JSON.stringify({ n: 1 }), correlation);
    await send(topic.replaceAll('.', '/'), JSON.stringify({ n: 2 }), Buffer.from('second'));
    await waitFor(() => replies.length === 2, 5_000, 'the second reply');
    await sleep(200);
    expect(replies.length).toBe(2);
    expect(ids.length).toBe(2);
    expect(JSON.parse(String(replies[1]?.payload))).toEqual({ echo: { n: 2 } });
  });

  it('a busbar request is answered by a raw responder on a shared subscription; one response topic for all', async () => {
    const topic = uniqueName('rr.raw-out');
    const path = topic.replaceAll('.', '/');
    const responder5 = await mqtt.connectAsync(brokerUrls.mqtt, { protocolVersion: 5 });
    const seenResponseTopics = new Set<string>();
    responder5.on('message', (_t, payload, packet) => {
      const { responseTopic, correlationData } = packet.properties ?? {};
      if (!responseTopic) return;
      seenResponseTopics.add(responseTopic);
      const n = JSON.parse(String(payload)) as number;
      const properties = {
        ...(correlationData ? { correlationData } : {}),
        contentType: 'application/json',
        ...(n < 0 ? { userProperties: { 'busbar-error': 'NEGATIVE', 'busbar-error-message': 'n < 0' } } : {}),
      };
      responder5.publish(responseTopic, JSON.stringify(n * 2), { qos: 1, properties });
      // A second reply to the same request: the requester takes the first and drops this one.
      if (n === 7) responder5.publish(responseTopic, JSON.stringify(-1), { qos: 1, properties });
    });
    try {
      await responder5.subscribeAsync(`$share/raw-svc/${path}`, { qos: 1 });
      const replies = await Promise.all(
        [1, 2, 3, 7].map((n) => requester.request<number, number>(topic, n, { timeoutMs: 5_000 })),
      );
      expect(replies).toEqual([2, 4, 6, 14]);
      expect(seenResponseTopics.size).toBe(1);
      expect([...seenResponseTopics][0]).toMatch(/^busbar-reply\/[0-9a-f-]{36}$/);
      const failed = await requester.request(topic, -3, { timeoutMs: 5_000 }).catch((e: unknown) => e);
      expect(BusbarError.is(failed, 'BUSBAR_REMOTE')).toBe(true);
      expect((failed as RemoteError).remoteCode).toBe('NEGATIVE');
      expect(await requester.request(topic, 10, { timeoutMs: 5_000 })).toBe(20);
    } finally {
      await responder5.endAsync(true);
    }
  });

  it('no responder is a TimeoutError; the request is not kept for a responder that comes later', async () => {
    const topic = uniqueName('rr.none');
    const t0 = Date.now();
    const error = await requester.request(topic, 1, { timeoutMs: 300 }).catch((e: unknown) => e);
    expect(BusbarError.is(error, 'BUSBAR_TIMEOUT')).toBe(true);
    expect(Date.now() - t0).toBeLessThan(1_500);
    let served = 0;
    await responder.respond(topic, (m) => {
      served++;
      return m.payload;
    });
    expect(await requester.request(topic, 2, { timeoutMs: 5_000 })).toBe(2);
    expect(served).toBe(1);
  });

  it('a request queued for an offline durable group session expires with its timeout', async () => {
    const bus = await openBus({ name: uniqueName('rr-durable'), sessionExpirySeconds: 60 });
    const topic = uniqueName('rr.durable');
    const got: unknown[] = [];
    try {
      const sub = await bus.subscribe(topic, (m) => void got.push(m.payload), { group: 'events' });
      await sub.close();
      // The group's session is offline but kept: the broker queues the request for it.
      const error = await requester.request(topic, 'stale', { timeoutMs: 300 }).catch((e: unknown) => e);
      expect(BusbarError.is(error, 'BUSBAR_TIMEOUT')).toBe(true);
      await bus.publish(topic, 'event');
      // The request's expiry is 1 s on the wire (MQTT counts whole seconds); Mosquitto drops it at its next
      // whole-second check, so up to 2 s after it was queued.
      await sleep(2_600);
      await bus.subscribe(topic, (m) => void got.push(m.payload), { group: 'events' });
      await waitFor(() => got.includes('event'), 5_000, 'the event kept for the group');
      await sleep(200);
      expect(got).toEqual(['event']);
    } finally {
      await bus.close();
    }
  });

  it("requests work again after the requester's connection is cut (the reply session keeps its subscription)", async () => {
    const target = new URL(brokerUrls.mqtt);
    const proxy = await createFaultProxy({ target: { host: target.hostname, port: Number(target.port || 1883) } });
    const bus = await openBus({ url: proxy.url(brokerUrls.mqtt), name: uniqueName('rr-cut') });
    const topic = uniqueName('rr.cut');
    await responder.respond(topic, (m) => m.payload);
    try {
      expect(await bus.request(topic, 1, { timeoutMs: 5_000 })).toBe(1);
      proxy.cutAll();
      // In flight across the cut: mqtt.js re-sends the request after the reconnect.
      const across = bus.request(topic, 2, { timeoutMs: 8_000 }).catch((e: unknown) => e);
      await waitFor(() => bus.health().connections.every((c) => c.state === 'up'), 8_000, 'the reconnect');
      expect(await bus.request(topic, 3, { timeoutMs: 5_000 })).toBe(3);
      expect(await across).toBe(2);
    } finally {
      await bus.close();
      await proxy.close();
    }
  });

  it('with a topicPrefix, replies travel under it and a # subscription sees requests but not replies', async () => {
    const prefix = `${uniqueName('pfx')}/`;
    const bus = await openBus({ name: uniqueName('rr-prefix'), topicPrefix: prefix });
    const seen: string[] = [];
    const watcher = await mqtt.connectAsync(brokerUrls.mqtt, { protocolVersion: 5 });
    watcher.on('message', (topic) => void seen.push(topic));
    try {
      await watcher.subscribeAsync(`${prefix}#`, { qos: 1 });
      const all: string[] = [];
      await bus.subscribe('#', (m) => void all.push(m.topic));
      await bus.respond('rr.prefixed', (m) => m.payload);
      expect(await bus.request('rr.prefixed', 'p', { timeoutMs: 5_000 })).toBe('p');
      await waitFor(() => seen.length >= 2 && all.length >= 1, 5_000, 'the request and reply on the wire');
      await sleep(200);
      expect(seen[0]).toBe(`${prefix}rr/prefixed`);
      expect(seen[1]).toMatch(new RegExp(`^${prefix}busbar-reply/[0-9a-f-]{36}$`));
      expect(all).toEqual(['rr.prefixed']);
    } finally {
      await watcher.endAsync(true);
      await bus.close();
    }
  });

  it('a message without a Response Topic, or one whose Response Topic is a wildcard, fails alone', async () => {
    const warnings: { message: string; error?: unknown }[] = [];
    const none = () => undefined;
    const logger = {
      debug: none,
      info: none,
      error: none,
      warn: (message: string, meta?: { error?: unknown }) => void warnings.push({ message, error: meta?.error }),
    };
    const bus = await openBus({ name: uniqueName('rr-bad'), logger });
    const topic = uniqueName('rr.bad');
    const path = topic.replaceAll('.', '/');
    const served: unknown[] = [];
    await bus.respond(topic, (m) => {
      served.push(m.payload);
      return m.payload;
    });
    try {
      await raw.publishAsync(path, '"plain"', { qos: 1 });
      await raw.publishAsync(path, '"wild"', {
        qos: 1,
        properties: { responseTopic: 'raw-replies/+/x', correlationData: Buffer.from('w') },
      });
      await waitFor(() => served.includes('wild'), 5_000, 'the wildcard request');
      expect(served).not.toContain('plain');
      // Refused typed before it reached the broker (which would drop the connection for a wildcard topic name).
      await waitFor(() => warnings.some((w) => w.message.startsWith('Replying on')), 5_000, 'the reply failure');
      const failure = warnings.find((w) => w.message.startsWith('Replying on'))?.error;
      expect(String(failure)).toContain('PublishError: Cannot reply: the response topic contains a wildcard');
      // The responder's bus still works at once: a request, and a publish/subscribe round trip.
      const t0 = Date.now();
      expect(await requester.request(topic, 'fine', { timeoutMs: 5_000 })).toBe('fine');
      // Well under the 5 s timeout a wedged responder would take, with room for a loaded CI machine.
      expect(Date.now() - t0).toBeLessThan(2_000);
      const events = uniqueName('rr.after');
      const got: unknown[] = [];
      await bus.subscribe(events, (m) => void got.push(m.payload), { group: 'g' });
      await bus.publish(events, 'event');
      await waitFor(() => got.length === 1, 5_000, 'the event');
      expect(warnings.some((w) => w.message.includes('without a Response Topic'))).toBe(true);
    } finally {
      await bus.close();
    }
  });

  it('close() rejects pending requests with ClosedError and stops responders', async () => {
    const bus = await openBus({ name: uniqueName('rr-close') });
    const other = await openBus({ name: uniqueName('rr-close-res') });
    const topic = uniqueName('rr.close');
    let served = 0;
    await bus.respond(topic, (m) => {
      served++;
      return m.payload;
    });
    await other.respond(uniqueName('rr.never'), () => undefined);
    const pending = other.request(uniqueName('rr.nobody'), 1, { timeoutMs: 30_000 }).catch((e: unknown) => e);
    await sleep(100);
    await other.close();
    expect(BusbarError.is(await pending, 'BUSBAR_CLOSED')).toBe(true);
    expect(await requester.request(topic, 1, { timeoutMs: 5_000 })).toBe(1);
    await bus.close();
    const after = await requester.request(topic, 2, { timeoutMs: 300 }).catch((e: unknown) => e);
    expect(BusbarError.is(after, 'BUSBAR_TIMEOUT')).toBe(true);
    expect(served).toBe(1);
  });
});

describe.runIf(ok)('mqtt request/reply: nothing per request is left behind', () => {
  it('one response topic; no pending entry, timer or abort listener once requests settle', async () => {
    const url = new URL(brokerUrls.mqtt);
    const name = uniqueName('rr-leak');
    const transport = driver.create({
      url,
      hosts: [url.host],
      options: mqttOptions.parse({}),
      bus: { name, connectTimeoutMs: 5_000, publishTimeoutMs: 5_000, closeTimeoutMs: 5_000 },
      secrets: [],
      logger: silentLogger,
      reportState: () => undefined,
    }) as MqttTransport;
    await transport.connect();
    const rr = transport.requestReply;
    const fast = uniqueName('leak.fast');
    const slow = uniqueName('leak.slow');
    const record = (topic: string, n: number) => ({
      topic,
      id: `${n}`,
      key: undefined,
      headers: {},
      body: Buffer.from(String(n)),
      contentType: 'application/json',
      timestamp: Date.now(),
    });
    await rr.respond(
      { topic: fast, group: undefined, prefetch: 100 },
      {
        onRequest: (r) => void r.reply({ body: r.body, contentType: 'application/json', headers: {} }),
        onError: () => {},
      },
    );
    await rr.respond(
      { topic: slow, group: 'g', prefetch: 100 },
      {
        onRequest: (r) =>
          // A second round may start after the check below and reply once the transport closed (ClosedError).
          void setTimeout(
            () => r.reply({ body: r.body, contentType: undefined, headers: {} }).catch(() => undefined),
            300,
          ),
        onError: () => {},
      },
    );
    // The first request connects the reply session (with its own keepalive timer): measure after it.
    await rr.request(record(fast, -1), { timeoutMs: 5_000 });
    const timers = () => process.getActiveResourcesInfo().filter((k) => k === 'Timeout').length;
    const controller = new AbortController();
    const before = timers();
    const outcomes = await Promise.all(
      Array.from({ length: 200 }, (_, n): Promise<unknown> => {
        const kind = n % 3;
        if (kind === 0) return rr.request(record(fast, n), { timeoutMs: 5_000 }).then(() => 'reply');
        if (kind === 1) return rr.request(record(slow, n), { timeoutMs: 50 }).catch((e: BusbarError) => e.code);
        return rr
          .request(record(slow, n), { timeoutMs: 5_000, signal: controller.signal })
          .catch((e: BusbarError) => e.code);
      }).concat([sleep(20).then(() => void controller.abort())]),
    );
    expect(outcomes.filter((o) => o === 'reply').length).toBe(67);
    expect(outcomes.filter((o) => o === 'BUSBAR_TIMEOUT').length).toBe(67);
    expect(outcomes.filter((o) => o === 'BUSBAR_ABORTED').length).toBe(66);
    expect(rr.pendingCount).toBe(0);
    expect(getEventListeners(controller.signal, 'abort').length).toBe(0);
    // The late replies arrive and are dropped; no per-request timer stays. The slow responder holds at most
    // its prefetch (100) of the 133 slow requests at once, so its own 300 ms timers run in two rounds.
    await sleep(500);
    expect(rr.pendingCount).toBe(0);
    await waitFor(() => timers() <= before, 5_000, 'the slow responder to finish');
    expect(rr.pendingCount).toBe(0);
    expect(rr.replyPath).toMatch(/^busbar-reply\/[0-9a-f-]{36}$/);
    await transport.close();
    // The reply session ended with the transport: nothing stays on the broker to queue replies for it.
    const replyId = rr.replyPath.slice('busbar-reply/'.length);
    const probe = mqtt.connect(brokerUrls.mqtt, {
      protocolVersion: 5,
      clientId: `${name}:reply:${replyId}`,
      clean: false,
      properties: { sessionExpiryInterval: 0 },
    });
    const sessionPresent = await new Promise<boolean>((resolve) =>
      probe.once('connect', (packet) => resolve(packet.sessionPresent)),
    );
    await probe.endAsync(true);
    expect(sessionPresent).toBe(false);
    const closed = await rr.request(record(fast, 1), { timeoutMs: 1_000 }).catch((e: BusbarError) => e.code);
    expect(closed).toBe('BUSBAR_CLOSED');
  });
});
