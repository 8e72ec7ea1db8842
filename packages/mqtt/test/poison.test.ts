import { BusbarError, silentLogger } from '@busbar/core';
import type { OutgoingRecord, TransportContext } from '@busbar/core/transport';
import { brokerAvailable, brokerUrls, createFaultProxy, sleep, uniqueName, waitFor } from '@busbar/testing';
import { describe, expect, it } from 'vitest';
import { Link } from '../src/link.js';
import { type MqttOptions, mqttOptions } from '../src/options.js';
import { Publisher } from '../src/publisher.js';
import { TopicMap } from '../src/topics.js';
import { openBus } from './helpers.js';

const ok = await brokerAvailable('mqtt');

function context(options: Partial<MqttOptions>): TransportContext<MqttOptions> {
  const url = new URL(brokerUrls.mqtt);
  return {
    url,
    hosts: [url.host],
    options: mqttOptions.parse(options),
    bus: { name: uniqueName('poison'), connectTimeoutMs: 5_000, publishTimeoutMs: 20_000, closeTimeoutMs: 10_000 },
    secrets: [],
    logger: silentLogger,
    reportState: () => undefined,
  };
}

function record(topic: string, n: number): OutgoingRecord {
  return {
    topic,
    id: `id-${n}`,
    key: undefined,
    headers: {},
    body: new TextEncoder().encode(String(n)),
    contentType: 'application/json',
    timestamp: Date.now(),
  };
}

describe.runIf(ok)('mqtt: a packet the broker answers by disconnecting', () => {
  it('is re-sent a bounded number of times, then fails typed, and later publishes flow', async () => {
    const ctx = context({ reconnectPeriodMs: 200 });
    const link = new Link(ctx, { clientId: uniqueName('poison'), clean: true, receiveMaximum: 100, name: 'p' });
    await link.connect();
    const publisher = new Publisher(link, new TopicMap('', 'busbar-retry'), ctx.options, 20_000, []);
    try {
      const topic = uniqueName('poison');
      // What validation keeps out of busbar's own publishes, sent past it: Mosquitto closes the connection.
      let poisonError: unknown;
      link.client.publish(
        `${topic}/x`,
        'poison',
        { qos: 1, properties: { userProperties: { h: 'a\tb' } } },
        (error) => {
          poisonError = error ?? 'acked';
        },
      );
      const before = publisher.publish([record(topic, 1), record(topic, 2)]);
      await waitFor(() => poisonError !== undefined, 10_000, 'the poisoned publish to fail');
      expect(BusbarError.is(poisonError, 'BUSBAR_PUBLISH'), String(poisonError)).toBe(true);
      expect((poisonError as BusbarError).retryable).toBe(false);
      await before;
      await publisher.publish([record(topic, 3)]);
    } finally {
      await publisher.flush();
      await link.close(false);
    }
  }, 20_000);
});

describe.runIf(ok)('mqtt: the publisher checks what core let through', () => {
  it('rejects strings MQTT cannot hold, typed, instead of a TypeError from mqtt-packet', async () => {
    const errors: unknown[] = [];
    const onError = (error: unknown) => void errors.push(error);
    process.on('uncaughtException', onError);
    process.on('unhandledRejection', onError);
    const ctx = context({ reconnectPeriodMs: 200 });
    const link = new Link(ctx, { clientId: uniqueName('check'), clean: true, receiveMaximum: 100, name: 'c' });
    await link.connect();
    const publisher = new Publisher(link, new TopicMap('', 'busbar-retry'), ctx.options, 5_000, []);
    try {
      const topic = uniqueName('check');
      const bad: [string, Partial<OutgoingRecord>, string][] = [
        ['a 70,000-byte value', { headers: { h: 'v'.repeat(70_000) } }, 'BUSBAR_INVALID_HEADER'],
        ['a name with a control character', { headers: { 'a\u0001': 'v' } }, 'BUSBAR_INVALID_HEADER'],
        ['a 70,000-byte name', { headers: { ['n'.repeat(70_000)]: 'v' } }, 'BUSBAR_INVALID_HEADER'],
        ['a value that escaping makes too long', { headers: { h: '\t'.repeat(20_000) } }, 'BUSBAR_INVALID_HEADER'],
        ['a content type with a line feed', { contentType: 'text/plain\n' }, 'BUSBAR_CONFIG'],
      ];
      for (const [label, change, code] of bad) {
        const error = await publisher.publish([{ ...record(topic, 1), ...change }]).catch((e: unknown) => e);
        expect(BusbarError.is(error, code as 'BUSBAR_CONFIG'), `${label}: ${String(error)}`).toBe(true);
        expect((error as BusbarError).retryable, label).toBe(false);
      }
      const long = `busbar-retry/g/${'x'.repeat(70_000)}`;
      const retry = await publisher.publishRaw(long, new Uint8Array(1), {}, undefined).catch((e: unknown) => e);
      expect(BusbarError.is(retry, 'BUSBAR_INVALID_TOPIC'), String(retry)).toBe(true);
      // The connection was never dropped: the next publish is acknowledged.
      await publisher.publish([record(topic, 2)]);
    } finally {
      await publisher.flush();
      await link.close(false);
      process.off('uncaughtException', onError);
      process.off('unhandledRejection', onError);
    }
    expect(errors).toEqual([]);
  });
});

describe.runIf(ok)('mqtt: close() while the broker is unreachable', () => {
  it('returns within closeTimeoutMs and leaves no connection trying to reconnect', async () => {
    const target = new URL(brokerUrls.mqtt);
    const proxy = await createFaultProxy({ target: { host: target.hostname, port: Number(target.port || 1883) } });
    try {
      const bus = await openBus({
        url: proxy.url(brokerUrls.mqtt),
        name: uniqueName('closebus'),
        sessionExpirySeconds: 60,
        closeTimeoutMs: 2_000,
        reconnectPeriodMs: 200,
        publishTimeoutMs: 10_000,
      });
      const topic = uniqueName('close');
      await bus.subscribe(topic, async () => undefined, { group: 'g' });
      await bus.subscribe(`${topic}.b`, async () => undefined);
      // A publish the broker never answers, then the broker goes away.
      proxy.blackhole(true);
      let settled: unknown;
      const pending = bus.publish(topic, 1).then(
        () => 'acked',
        (e: unknown) => e,
      );
      void pending.then((outcome) => {
        settled = outcome;
      });
      await sleep(100);
      proxy.refuse(60_000);
      const started = Date.now();
      await bus.close();
      const took = Date.now() - started;
      expect(took).toBeLessThan(2_500);
      await sleep(10);
      expect(BusbarError.is(settled), `the pending publish settled typed: ${String(settled)}`).toBe(true);
      // Reachable again: nothing of the closed bus may come back.
      proxy.blackhole(false);
      proxy.refuse(0);
      await sleep(1_000);
      expect(proxy.connections).toBe(0);
    } finally {
      await proxy.close();
    }
  }, 20_000);
});
