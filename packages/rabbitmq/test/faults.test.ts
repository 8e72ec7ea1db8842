import { BusbarError, MemoryIdempotencyStore } from '@busbar/core';
import { brokerAvailable, brokerUrls, createFaultProxy, sleep, uniqueName, waitFor } from '@busbar/testing';
import { describe, expect, it } from 'vitest';
import { open } from './helpers.js';

const ok = await brokerAvailable('rabbitmq');
const target = new URL(brokerUrls.rabbitmq);

describe.runIf(ok)('rabbitmq faults (fault proxy)', () => {
  it('10,000 confirmed publishes while a group consumes, every connection cut 3 times: none lost', {
    timeout: 120_000,
  }, async () => {
    const proxy = await createFaultProxy({ target: { host: target.hostname, port: Number(target.port || 5672) } });
    const url = proxy.url(brokerUrls.rabbitmq);
    const topic = uniqueName('cuts');
    const plain = uniqueName('plain');
    const idem = uniqueName('idem');
    const consumer = await open({ publishTimeoutMs: 5_000 }, url);
    const publisher = await open({ publishTimeoutMs: 5_000 }, url);
    try {
      const deliveries = new Map<string, number>();
      const effects = new Map<string, number>();
      await consumer.subscribe(topic, async (m) => void deliveries.set(m.id, (deliveries.get(m.id) ?? 0) + 1), {
        group: plain,
        concurrency: 8,
      });
      await consumer.subscribe(topic, async (m) => void effects.set(m.id, (effects.get(m.id) ?? 0) + 1), {
        group: idem,
        concurrency: 8,
        idempotency: { store: new MemoryIdempotencyStore() },
      });

      const total = 10_000;
      const confirmed = new Set<string>();
      let failures = 0;
      let next = 0;
      let cuts = 0;
      const cutSizes: number[] = [];
      // Each cut hits every connection while they are up and traffic flows.
      const chaos = (async () => {
        for (const at of [2_500, 5_000, 7_500]) {
          await waitFor(
            () => confirmed.size >= at && publisher.health().status === 'up' && consumer.health().status === 'up',
            60_000,
            `${at} confirmed and connections up`,
          );
          cutSizes.push(proxy.connections);
          proxy.cutAll();
          cuts++;
        }
      })();
      // 100 publishers in parallel; a failed publish is retried with the same id, as a caller would.
      await Promise.all(
        Array.from({ length: 100 }, async () => {
          while (next < total) {
            const n = next++;
            const id = `m-${n}`;
            for (let attempt = 0; ; attempt++) {
              try {
                await publisher.publish(topic, { n }, { id });
                confirmed.add(id);
                break;
              } catch (error) {
                failures++;
                if (!BusbarError.is(error) || !error.retryable || attempt > 50) throw error;
                await sleep(50);
              }
            }
          }
        }),
      );
      await chaos;
      expect(cuts).toBe(3);
      // Consumer bus: publish + consume connections; publisher bus: publish connection only.
      expect(cutSizes).toEqual([3, 3, 3]);
      expect(confirmed.size).toBe(total);
      await waitFor(
        () => deliveries.size >= total && effects.size >= total,
        90_000,
        'every confirmed message in both groups',
      );
      const lost = [...confirmed].filter((id) => !deliveries.has(id) || !effects.has(id));
      let duplicates = 0;
      for (const count of deliveries.values()) duplicates += count - 1;
      const duplicatedEffects = [...effects.values()].filter((c) => c > 1).length;
      console.info(
        `[rabbitmq cuts] messages=${total} cuts=${cuts} (connections cut each time: ${cutSizes.join('/')}) publishFailuresRetried=${failures} lost=${lost.length} ` +
          `duplicateDeliveries=${duplicates} duplicatedEffectsWithIdempotency=${duplicatedEffects}`,
      );
      expect(lost).toEqual([]);
      expect(duplicatedEffects).toBe(0);
      expect(consumer.health().status).toBe('up');
    } finally {
      await Promise.all([consumer.close(), publisher.close()]);
      await proxy.close();
    }
  });

  it('publish and subscribe during an outage wait for the reconnect (within their timeouts)', {
    timeout: 60_000,
  }, async () => {
    const proxy = await createFaultProxy({ target: { host: target.hostname, port: Number(target.port || 5672) } });
    const bus = await open({ publishTimeoutMs: 10_000, connectTimeoutMs: 10_000 }, proxy.url(brokerUrls.rabbitmq));
    const topic = uniqueName('outage');
    const group = uniqueName('g');
    try {
      // The group's queue exists before the outage (else a message sent first would be unroutable).
      await (await bus.subscribe(topic, async () => undefined, { group })).close();
      proxy.refuse(1_500);
      await waitFor(() => bus.health().status !== 'up', 5_000, 'the outage noticed');
      const started = Date.now();
      const got = new Set<string>();
      const [, id] = await Promise.all([
        bus.subscribe(topic, async (m) => void got.add(m.id), { group }),
        // Queued until the publisher channel is back.
        sleep(200).then(() => bus.publish(topic, 'queued')),
      ]);
      expect(Date.now() - started).toBeGreaterThanOrEqual(1_000);
      await waitFor(() => got.has(id), 10_000, 'the queued message');
      expect(bus.health().status).toBe('up');
    } finally {
      await bus.close();
      await proxy.close();
    }
  });

  // A subscribe whose connection dropped while it was opening its channel failed with amqplib's "Channel ended,
  // no reply will be forthcoming", although amqplib had the connection back a moment later.
  it('a subscribe whose connection drops while it opens its channel opens on the next connection', {
    timeout: 60_000,
  }, async () => {
    const proxy = await createFaultProxy({ target: { host: target.hostname, port: Number(target.port || 5672) } });
    const bus = await open({ connectTimeoutMs: 10_000 }, proxy.url(brokerUrls.rabbitmq));
    const topic = uniqueName('midopen');
    const group = uniqueName('g');
    try {
      // The consumer connection is up; the next subscribe's channel.open then gets no answer until the cut.
      await (await bus.subscribe(topic, async () => undefined, { group })).close();
      proxy.blackhole(true);
      const got = new Set<string>();
      const subscribing = bus.subscribe(topic, async (m) => void got.add(m.id), { group });
      await sleep(300);
      proxy.blackhole(false);
      proxy.cutAll();
      const sub = await subscribing;
      const id = await bus.publish(topic, 'after the cut');
      await waitFor(() => got.has(id), 10_000, 'a message through the subscription opened on the next connection');
      await sub.close();
    } finally {
      await bus.close();
      await proxy.close();
    }
  });

  it('a subscribe on a broker that stopped answering rejects within connectTimeoutMs, not the heartbeat', {
    timeout: 60_000,
  }, async () => {
    const proxy = await createFaultProxy({ target: { host: target.hostname, port: Number(target.port || 5672) } });
    const bus = await open({ connectTimeoutMs: 1_500 }, proxy.url(brokerUrls.rabbitmq));
    const topic = uniqueName('silentsub');
    try {
      await (await bus.subscribe(topic, async () => undefined, { group: 'g' })).close();
      proxy.blackhole(true);
      const started = Date.now();
      const error = await bus.subscribe(topic, async () => undefined, { group: 'g2' }).catch((e: unknown) => e);
      // Three missed heartbeats (30 s by default) bounded it before.
      expect(Date.now() - started).toBeLessThan(10_000);
      expect(BusbarError.is(error, 'BUSBAR_TIMEOUT')).toBe(true);
      expect((error as BusbarError).retryable).toBe(true);
      proxy.blackhole(false);
      proxy.cutAll();
      const got = new Set<string>();
      await waitFor(
        async () => {
          const sub = await bus
            .subscribe(topic, async (m) => void got.add(m.id), { group: 'g3' })
            .catch(() => undefined);
          return sub !== undefined;
        },
        20_000,
        'subscribing again once the broker answers',
      );
      const id = await bus.publish(topic, 'after');
      await waitFor(() => got.has(id), 10_000, 'delivery after recovery');
    } finally {
      await bus.close();
      await proxy.close();
    }
  });

  it('a blackholed connection makes publish reject within the confirm timeout; it recovers after', {
    timeout: 60_000,
  }, async () => {
    const proxy = await createFaultProxy({ target: { host: target.hostname, port: Number(target.port || 5672) } });
    const bus = await open({ publishTimeoutMs: 1_000 }, proxy.url(brokerUrls.rabbitmq));
    const topic = uniqueName('bh');
    const group = uniqueName('g');
    try {
      const got = new Set<string>();
      await bus.subscribe(topic, async (m) => void got.add(m.id), { group });
      await bus.publish(topic, 'before');
      proxy.blackhole(true);
      const started = Date.now();
      const results = await Promise.allSettled(Array.from({ length: 20 }, (_, n) => bus.publish(topic, n)));
      const elapsed = Date.now() - started;
      for (const r of results) {
        expect(r.status).toBe('rejected');
        const error = (r as PromiseRejectedResult).reason;
        expect(BusbarError.is(error, 'BUSBAR_TIMEOUT')).toBe(true);
        expect(error.retryable).toBe(true);
      }
      expect(elapsed).toBeLessThan(2_500);
      proxy.blackhole(false);
      proxy.cutAll();
      await waitFor(() => bus.health().status !== 'up', 5_000, 'the cut noticed');
      await waitFor(() => bus.health().status === 'up', 20_000, 'reconnected');
      const id = await bus.publish(topic, 'after');
      await waitFor(() => got.has(id), 10_000, 'delivery after recovery');
    } finally {
      await bus.close();
      await proxy.close();
    }
  });
  it('a broker that accepts TCP but never answers AMQP fails connect within connectTimeoutMs, saying so', {
    timeout: 30_000,
  }, async () => {
    // What a RabbitMQ at its file-descriptor limit does: the kernel accepts, the broker never speaks.
    const proxy = await createFaultProxy({ target: { host: target.hostname, port: Number(target.port || 5672) } });
    const url = proxy.url(brokerUrls.rabbitmq);
    try {
      proxy.blackhole(true);
      const started = Date.now();
      const error = await open({ connectTimeoutMs: 1_000 }, url).catch((e: unknown) => e);
      expect(Date.now() - started).toBeLessThan(5_000);
      expect(BusbarError.is(error, 'BUSBAR_CONNECTION')).toBe(true);
      expect((error as BusbarError).retryable).toBe(true);
      expect((error as Error).message).toContain('no answer within connectTimeoutMs (1000 ms)');
      expect((error as Error).message).not.toContain('guest:guest');
      // Once the broker answers again, a new bus connects and works.
      proxy.blackhole(false);
      const bus = await open({}, url);
      try {
        const topic = uniqueName('answers');
        const got: string[] = [];
        await bus.subscribe<string>(topic, async (m) => void got.push(m.payload), { group: uniqueName('g') });
        await bus.publish(topic, 'again');
        await waitFor(() => got.length === 1, 10_000, 'the message after the silent broker');
      } finally {
        await bus.close();
      }
    } finally {
      proxy.close();
    }
  });
});
