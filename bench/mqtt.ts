import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { driver } from '@busbar/mqtt';
import mqttLib, { type MqttClient } from 'mqtt';
import { busbarSide } from './lib/busbar-side.js';
import { PendingReplies } from './lib/replies.js';
import type { BrokerBench, RequestReplySide, Running, Side } from './lib/types.js';
import {
  BATCH,
  Countdown,
  PREFETCH,
  pool,
  REPLY_BYTES,
  REQUEST_PREFETCH,
  sleep,
  uniqueGroup,
  uniqueTopic,
} from './lib/util.js';

/**
 * A private Mosquitto for the bench (the shared one keeps Mosquitto's defaults):
 * `set_tcp_nodelay true` (PERFORMANCE.md pitfall 6: QoS 1 with many in flight
 * collapses without it), 100 in flight per client, queues large enough that
 * nothing is dropped while a consumer catches up.
 */
const PORT = Number(process.env.BUSBAR_BENCH_MQTT_PORT ?? 18830);
const url = `mqtt://127.0.0.1:${PORT}`;
const CONFIG = `listener ${PORT} 127.0.0.1
allow_anonymous true
set_tcp_nodelay true
max_inflight_messages 100
max_queued_messages 1000000
persistence false
`;

let broker: ChildProcess | undefined;
let dir: string | undefined;

function answers(): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect({ host: '127.0.0.1', port: PORT });
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
}

async function startBroker(): Promise<boolean> {
  if (broker) return true;
  if (await answers()) throw new Error(`port ${PORT} is taken; set BUSBAR_BENCH_MQTT_PORT`);
  dir = mkdtempSync(path.join(os.tmpdir(), 'busbar-bench-mosquitto-'));
  writeFileSync(path.join(dir, 'mosquitto.conf'), CONFIG);
  const child = spawn('mosquitto', ['-c', path.join(dir, 'mosquitto.conf')], { stdio: 'ignore' });
  const failed = new Promise<boolean>((resolve) => child.once('error', () => resolve(false)));
  broker = child;
  for (let i = 0; i < 50; i++) {
    if (await Promise.race([answers(), failed])) return true;
    await sleep(100);
  }
  return false;
}

const pathOf = (topic: string) => topic.replaceAll('.', '/');

async function client(options: mqttLib.IClientOptions = {}): Promise<MqttClient> {
  const c = await mqttLib.connectAsync(url, { protocolVersion: 5, clean: true, reconnectPeriod: 0, ...options });
  // Same socket option as the busbar driver (Nagle off).
  (c.stream as { setNoDelay?: (on: boolean) => void } | undefined)?.setNoDelay?.(true);
  return c;
}

/**
 * MQTT 5 request/response with mqtt.js: requests at QoS 1 carry a Response Topic and Correlation Data; the
 * requesting client subscribes its one response topic once and matches replies by correlation data; a
 * responder client (its own connection, Receive Maximum = the prefetch) shares `$share/<group>/<topic>` and
 * publishes each reply at QoS 1 to the request's response topic with the same correlation data.
 */
async function rawRequestReply(requester: MqttClient): Promise<RequestReplySide> {
  const replyTopic = `rawbench-reply/${uniqueGroup()}`;
  const pending = new PendingReplies();
  requester.on('message', (topic, body, packet) => {
    if (topic !== replyTopic) return;
    const correlation = packet.properties?.correlationData;
    if (correlation) pending.settle(correlation.toString('latin1'), body);
  });
  await requester.subscribeAsync(replyTopic, { qos: 1 });
  return {
    fresh: async () => ({ topic: uniqueTopic(), group: uniqueGroup() }),
    drop: async () => undefined,
    async serve(target) {
      const c = await client({ properties: { receiveMaximum: REQUEST_PREFETCH } });
      c.on('message', (_topic, _body, packet) => {
        const responseTopic = packet.properties?.responseTopic;
        if (!responseTopic) return;
        const correlationData = packet.properties?.correlationData;
        c.publish(responseTopic, REPLY_BYTES, { qos: 1, properties: correlationData ? { correlationData } : {} });
      });
      await c.subscribeAsync(`$share/${target.group}/${pathOf(target.topic)}`, { qos: 1 });
      return { close: () => c.endAsync() };
    },
    request: (target, payload) =>
      pending.request((id) => {
        requester.publish(pathOf(target.topic), payload, {
          qos: 1,
          properties: { responseTopic: replyTopic, correlationData: Buffer.from(id, 'latin1') },
        });
      }),
  };
}

/** Raw mqtt.js, best practice: QoS 1 with the broker's Receive Maximum in flight, shared subscription, auto PUBACK. */
async function rawSide(): Promise<Side> {
  const pub = await client();
  const window =
    pub.options.properties?.receiveMaximum ??
    (pub as unknown as { _serverReceiveMaximum?: number })._serverReceiveMaximum ??
    100;
  const inFlight = Math.min(100, window);
  const publish = (topic: string, payload: Buffer) => pub.publishAsync(pathOf(topic), payload, { qos: 1 });
  const requestReply = await rawRequestReply(pub);
  return {
    label: 'raw',
    requestReply,
    fresh: async () => ({ topic: uniqueTopic(), group: uniqueGroup() }),
    drop: async () => undefined,
    async publishBatch(target, count, payload) {
      // MQTT has no batch: a batch is BATCH publishes issued at once, awaited together (mqtt.js queues past the window).
      for (let sent = 0; sent < count; sent += BATCH) {
        const n = Math.min(BATCH, count - sent);
        await pool(n, inFlight, () => publish(target.topic, payload));
      }
    },
    async publishConcurrent(target, count, payload) {
      await pool(count, inFlight, () => publish(target.topic, payload));
    },
    async publishOne(target, payload) {
      await publish(target.topic, payload);
    },
    async consume(target, count, onBody): Promise<Running> {
      const sub = await client({ properties: { receiveMaximum: PREFETCH } });
      const handled = new Countdown(count);
      sub.on('message', (_topic, body) => {
        onBody(body);
        handled.add();
      });
      await sub.subscribeAsync(`$share/${target.group}/${pathOf(target.topic)}`, { qos: 1 });
      return { done: handled.done, close: () => sub.endAsync() };
    },
    async close() {
      await pub.endAsync();
    },
  };
}

export const mqtt: BrokerBench = {
  name: 'mqtt',
  defaultMessages: 10_000,
  requestMessages: 5_000,
  // A group's backlog sits in per-member session queues (max_queued_messages): consume is measured end to end instead.
  backlog: false,
  available: () => startBroker().catch(() => false),
  async version() {
    const c = await client();
    try {
      const text = await new Promise<string>((resolve) => {
        const timer = setTimeout(() => resolve('?'), 2_000);
        c.on('message', (_t, body) => {
          clearTimeout(timer);
          resolve(body.toString());
        });
        c.subscribe('$SYS/broker/version');
      });
      return `${text} (private, set_tcp_nodelay true, QoS 1)`;
    } finally {
      await c.endAsync();
    }
  },
  raw: rawSide,
  busbar: () =>
    busbarSide('busbar', {
      connect: { url, driver, sessionExpirySeconds: 60 },
      declareGroup: false,
    }),
  async shutdown() {
    broker?.kill('SIGTERM');
    broker = undefined;
    if (dir) rmSync(dir, { recursive: true, force: true });
    dir = undefined;
  },
};
