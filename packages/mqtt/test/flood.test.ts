import { connect, silentLogger } from '@busbar/core';
import type { Delivery, IncomingRequest } from '@busbar/core/transport';
import { brokerAvailable, brokerUrls, uniqueName, waitFor } from '@busbar/testing';
import mqtt, { type MqttClient } from 'mqtt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { driver, mqttOptions } from '../src/index.js';
import type { MqttTransport } from '../src/transport.js';
import { PrivateMosquitto, privateBrokerAvailable } from './helpers.js';

const ok = await brokerAvailable('mqtt');
const FLOOD = 20_000;
const PREFETCH = 100;
/**
 * The test counts a request as served once its `reply()` promise settles; the driver counts it a few ticks
 * earlier, and may hand over the next one meanwhile: at most one more per request served concurrently.
 */
const SLACK = 8;

function transportAt(url: string): MqttTransport {
  const parsed = new URL(url);
  return driver.create({
    url: parsed,
    hosts: [parsed.host],
    options: mqttOptions.parse({}),
    bus: { name: uniqueName('flood'), connectTimeoutMs: 5_000, publishTimeoutMs: 10_000, closeTimeoutMs: 5_000 },
    secrets: [],
    logger: silentLogger,
    reportState: () => undefined,
  }) as MqttTransport;
}

/**
 * Serves requests the way core does (a queue, `concurrency` at a time, each answered a little later) and
 * records the most requests the transport had handed over unanswered: the backlog a flood can build.
 */
function slowServer(concurrency: number) {
  const queue: IncomingRequest[] = [];
  let running = 0;
  const stats = { maxBacklog: 0, served: 0 };
  const pump = (): void => {
    while (running < concurrency && queue.length > 0) {
      const request = queue.shift() as IncomingRequest;
      running++;
      setTimeout(() => {
        void request.reply({ body: request.body, contentType: request.contentType, headers: {} }).finally(() => {
          running--;
          stats.served++;
          pump();
        });
      }, 1);
    }
  };
  const onRequest = (request: IncomingRequest): void => {
    queue.push(request);
    stats.maxBacklog = Math.max(stats.maxBacklog, queue.length + running);
    pump();
  };
  return { stats, onRequest, backlog: () => queue.length + running };
}

/** Settles deliveries two at a time, each a little later, and records the most it held unsettled. */
function slowConsumer() {
  const queue: Delivery[] = [];
  let running = 0;
  const stats = { maxUnsettled: 0, settled: 0 };
  const pump = (): void => {
    while (running < 2 && queue.length > 0) {
      const delivery = queue.shift() as Delivery;
      running++;
      setTimeout(() => {
        void delivery.ack().finally(() => {
          running--;
          stats.settled++;
          pump();
        });
      }, 1);
    }
  };
  const onDelivery = (delivery: Delivery): void => {
    queue.push(delivery);
    stats.maxUnsettled = Math.max(stats.maxUnsettled, queue.length + running);
    pump();
  };
  return { stats, onDelivery, backlog: () => queue.length + running };
}

/** A raw MQTT 5 client that floods `path` with requests and counts the replies by correlation data. */
async function flooder(url: string) {
  const client: MqttClient = await mqtt.connectAsync(url, { protocolVersion: 5 });
  const replyTopic = `flood-replies/${uniqueName('r')}`;
  const replies = new Set<string>();
  client.on('message', (topic, _payload, packet) => {
    const correlation = packet.properties?.correlationData;
    if (topic === replyTopic && correlation) replies.add(Buffer.from(correlation).toString());
  });
  await client.subscribeAsync(replyTopic, { qos: 1 });
  const flood = (path: string, qos: 0 | 1) =>
    Promise.all(
      Array.from({ length: FLOOD }, (_, n) =>
        client.publishAsync(path, JSON.stringify(n), {
          qos,
          properties: { responseTopic: replyTopic, correlationData: Buffer.from(String(n)) },
        }),
      ),
    );
  return { client, replies, flood };
}

const record = (topic: string) => ({
  topic,
  id: uniqueName('after'),
  key: undefined,
  headers: {},
  body: Buffer.from('"after"'),
  contentType: 'application/json',
  timestamp: Date.now(),
});

describe.runIf(privateBrokerAvailable())('mqtt under a flood (private Mosquitto that queues 20,000 per client)', () => {
  const broker = new PrivateMosquitto();
  beforeAll(() => broker.start(), 10_000);
  afterAll(() => broker.destroy());

  it(`holds at most its prefetch in hand: the broker keeps the rest, all ${FLOOD} are answered, then more`, async () => {
    const transport = transportAt(broker.url);
    await transport.connect();
    const { client, replies, flood } = await flooder(broker.url);
    try {
      const topic = uniqueName('flood.qos1');
      const server = slowServer(8);
      await transport.requestReply.respond(
        { topic, group: 'svc', prefetch: PREFETCH },
        { onRequest: server.onRequest, onError: () => undefined },
      );
      await flood(topic.replaceAll('.', '/'), 1);
      await waitFor(() => replies.size === FLOOD, 120_000, 'every request answered');
      // Flow control, not dropping: the backlog never passed the prefetch window, and nothing was lost.
      expect(server.stats.maxBacklog).toBeGreaterThan(0);
      expect(server.stats.maxBacklog).toBeLessThanOrEqual(PREFETCH + SLACK);
      const reply = await transport.requestReply.request(record(topic), { timeoutMs: 10_000 });
      expect(Buffer.from(reply.body).toString()).toBe('"after"');
      await waitFor(() => server.backlog() === 0, 5_000, 'nothing left in hand');
    } finally {
      await client.endAsync(true);
      await transport.close();
    }
  }, 180_000);

  it('a subscription holds at most its prefetch unsettled (Mosquitto 2.0 overruns the Receive Maximum), QoS 0 too', async () => {
    const transport = transportAt(broker.url);
    await transport.connect();
    const raw = await mqtt.connectAsync(broker.url, { protocolVersion: 5 });
    const subscriptions: { close(): Promise<void> }[] = [];
    try {
      const topic = uniqueName('flood.sub');
      const prefetch = 10;
      const total = 3_000;
      const counts = new Map<number, ReturnType<typeof slowConsumer>>();
      for (const qos of [1, 0] as const) {
        const consumer = slowConsumer();
        counts.set(qos, consumer);
        const sub = await transport.subscribe(
          { topic: `${topic}.q${qos}`, group: qos === 1 ? 'g' : undefined, prefetch, handlerTimeoutMs: 30_000 },
          { onDelivery: consumer.onDelivery, onError: () => undefined },
        );
        subscriptions.push(sub);
        const path = `${topic}.q${qos}`.replaceAll('.', '/');
        await Promise.all(Array.from({ length: total }, (_, n) => raw.publishAsync(path, String(n), { qos })));
      }
      const q1 = counts.get(1) as ReturnType<typeof slowConsumer>;
      const q0 = counts.get(0) as ReturnType<typeof slowConsumer>;
      // QoS 1: every message arrives (the broker holds them); QoS 0: as many as the broker kept.
      await waitFor(() => q1.stats.settled === total, 60_000, 'every QoS 1 message');
      await waitFor(() => q0.backlog() === 0 && q0.stats.settled > 0, 60_000, 'the QoS 0 backlog to drain');
      for (const { stats } of [q1, q0]) {
        expect(stats.maxUnsettled).toBeGreaterThan(1);
        // The test counts a delivery settled a few ticks after the driver does (see SLACK).
        expect(stats.maxUnsettled).toBeLessThanOrEqual(prefetch + 2);
      }
    } finally {
      for (const sub of subscriptions) await sub.close();
      await raw.endAsync(true);
      await transport.close();
    }
  }, 120_000);
});

describe.runIf(ok)('mqtt responder under a flood of QoS 0 requests', () => {
  it('holds at most its prefetch in hand (QoS 0 has no PUBACK to wait on) and still answers afterwards', async () => {
    const transport = transportAt(brokerUrls.mqtt);
    await transport.connect();
    const { client, replies, flood } = await flooder(brokerUrls.mqtt);
    try {
      const topic = uniqueName('flood.qos0');
      const server = slowServer(8);
      await transport.requestReply.respond(
        { topic, group: undefined, prefetch: PREFETCH },
        { onRequest: server.onRequest, onError: () => undefined },
      );
      await flood(topic.replaceAll('.', '/'), 0);
      await waitFor(() => server.backlog() === 0 && server.stats.served > 0, 60_000, 'the backlog to drain');
      expect(server.stats.maxBacklog).toBeLessThanOrEqual(PREFETCH + SLACK);
      // What the broker kept (its queue per client is bounded) was served; nothing was served twice.
      expect(server.stats.served).toBeLessThanOrEqual(FLOOD);
      await waitFor(() => replies.size === server.stats.served, 10_000, 'the replies of the served requests');
      const reply = await transport.requestReply.request(record(topic), { timeoutMs: 10_000 });
      expect(Buffer.from(reply.body).toString()).toBe('"after"');
    } finally {
      await client.endAsync(true);
      await transport.close();
    }
  }, 120_000);

  it('a bus responder flooded through the whole pipeline keeps answering', async () => {
    const bus = await connect({ url: brokerUrls.mqtt, driver, logger: silentLogger, name: uniqueName('flood-bus') });
    const { client, replies, flood } = await flooder(brokerUrls.mqtt);
    try {
      const topic = uniqueName('flood.bus');
      await bus.respond<number, number>(topic, (m) => m.payload + 1, { concurrency: 4 });
      await flood(topic.replaceAll('.', '/'), 1);
      // Mosquitto's default queue (1,000 per client) may drop some of a flood this size; what reaches the
      // responder is answered.
      await waitFor(() => replies.size >= 1_000, 60_000, 'the flood answered');
      expect(await bus.request<number, number>(topic, 41, { timeoutMs: 10_000 })).toBe(42);
    } finally {
      await client.endAsync(true);
      await bus.close();
    }
  }, 120_000);
});

describe.runIf(ok)('mqtt: a stalled connection (prefetch full) outliving the keepalive', () => {
  it('reconnects, resumes the group session and delivers every message, the slow one once', async () => {
    const bus = await connect({
      url: brokerUrls.mqtt,
      driver,
      logger: silentLogger,
      name: uniqueName('stall'),
      keepaliveSeconds: 1,
    });
    const raw = await mqtt.connectAsync(brokerUrls.mqtt, { protocolVersion: 5 });
    try {
      const topic = uniqueName('stall.t');
      const seen: number[] = [];
      await bus.subscribe<number>(
        topic,
        async (m) => {
          seen.push(m.payload);
          // Longer than 1.5 x keepalive: mqtt.js gives the stalled connection up and reconnects.
          if (m.payload === 0) await new Promise((r) => setTimeout(r, 4_000));
        },
        { group: 'g', concurrency: 1, prefetch: 1 },
      );
      const since = () =>
        bus
          .health()
          .connections.find((c) => c.name.startsWith('subscriber'))
          ?.since?.valueOf();
      const before = since();
      const path = topic.replaceAll('.', '/');
      for (let n = 0; n < 5; n++) await raw.publishAsync(path, JSON.stringify(n), { qos: 1 });
      await waitFor(() => new Set(seen).size === 5, 20_000, 'every message');
      expect(since()).not.toBe(before);
      expect(seen.filter((n) => n === 0)).toEqual([0]);
      expect([...new Set(seen)].sort()).toEqual([0, 1, 2, 3, 4]);
    } finally {
      await raw.endAsync(true);
      await bus.close();
    }
  }, 40_000);
});
