import { type Bus, connect, silentLogger } from '@busbar/core';
import {
  brokerAvailable,
  createFaultProxy,
  type FaultProxy,
  freePort,
  sleep,
  uniqueName,
  waitFor,
} from '@busbar/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { driver } from '../src/index.js';
import { Kafka, logLevel } from '../src/internals.js';
import { type PrivateBroker, privateBroker } from './private-broker.js';

// Needs java and the Kafka jars (scripts/kafka/kafka.sh fetch); the shared broker being up says they are there.
const ok = await brokerAvailable('kafka');

const fast = {
  sessionTimeoutMs: 6_000,
  heartbeatIntervalMs: 500,
  rebalanceTimeoutMs: 6_000,
  maxWaitTimeMs: 200,
  publishTimeoutMs: 10_000,
  connectTimeoutMs: 10_000,
};

/** Publishes `count` messages in concurrent waves; a failed publish is retried with the same id until it resolves. */
async function publishAll(bus: Bus, topic: string, count: number, onProgress: (done: number) => Promise<void> | void) {
  const resolved = new Set<string>();
  let failures = 0;
  for (let start = 0; start < count; start += 100) {
    await Promise.all(
      Array.from({ length: Math.min(100, count - start) }, async (_, i) => {
        const n = start + i;
        const id = `${topic.slice(-12)}-${n}`;
        for (;;) {
          try {
            await bus.publish(topic, { n }, { id, key: `k${n % 16}` });
            resolved.add(id);
            return;
          } catch {
            failures++;
            await sleep(200);
          }
        }
      }),
    );
    await onProgress(resolved.size);
  }
  return { resolved, failures };
}

describe.runIf(ok)('kafka faults on a private broker', () => {
  let proxy: FaultProxy;
  let broker: PrivateBroker;
  let url: string;
  const buses: Bus[] = [];
  const open = async () => {
    const bus = await connect({
      url,
      driver,
      logger: silentLogger,
      ...fast,
    });
    buses.push(bus);
    return bus;
  };

  beforeAll(async () => {
    // The broker advertises the proxy, so every client connection (after bootstrap too) goes through it.
    const brokerPort = await freePort();
    proxy = await createFaultProxy({ target: { host: '127.0.0.1', port: brokerPort } });
    broker = await privateBroker({ advertisePort: proxy.port, port: brokerPort });
    await broker.start();
    url = proxy.url('kafka://127.0.0.1:9092');
  }, 150_000);

  afterAll(async () => {
    await Promise.all(buses.map((bus) => bus.close().catch(() => undefined)));
    await proxy?.close();
    await broker?.destroy();
  }, 60_000);

  it('10,000 messages through a group while every connection is cut 3 times: nothing published is lost', async () => {
    const topic = uniqueName('fault-cut');
    const group = uniqueName('g');
    const seen = new Map<string, number>();
    const handler = async (m: { id: string }) => {
      seen.set(m.id, (seen.get(m.id) ?? 0) + 1);
    };
    const [c1, c2] = await Promise.all([open(), open()]);
    await c1.subscribe(topic, handler, { group, concurrency: 8 });
    await c2.subscribe(topic, handler, { group, concurrency: 8 });
    const publisher = await open();
    let cuts = 0;
    const { resolved, failures } = await publishAll(publisher, topic, 10_000, (done) => {
      if (cuts < 3 && done >= (cuts + 1) * 2_500) {
        cuts++;
        proxy.cutAll();
      }
    });
    expect(cuts).toBe(3);
    await waitFor(() => [...resolved].every((id) => seen.has(id)), 90_000, 'every resolved message');
    const lost = [...resolved].filter((id) => !seen.has(id)).length;
    const duplicates = [...seen.values()].reduce((sum, n) => sum + n - 1, 0);
    console.log(
      `[kafka fault] cuts: published ${resolved.size}, cuts ${cuts}, publish retries ${failures}, lost ${lost}, duplicates ${duplicates}`,
    );
    expect(resolved.size).toBe(10_000);
    expect(lost).toBe(0);
  }, 150_000);

  it('a broker restart mid-run loses nothing that was published', async () => {
    const topic = uniqueName('fault-restart');
    const group = uniqueName('g');
    const seen = new Map<string, number>();
    const consumer = await open();
    await consumer.subscribe(
      topic,
      async (m) => {
        seen.set(m.id, (seen.get(m.id) ?? 0) + 1);
      },
      { group, concurrency: 4 },
    );
    /** The group as the broker sees it, and where each partition ends and is committed. */
    const groupFacts = async () => {
      const admin = new Kafka({ brokers: [new URL(url).host], logLevel: logLevel.NOTHING }).admin();
      await admin.connect();
      try {
        const [ends, [committed], { groups }] = await Promise.all([
          admin.fetchTopicOffsets(topic),
          admin.fetchOffsets({ groupId: group, topics: [topic] }),
          admin.describeGroups([group]),
        ]);
        return {
          members: groups[0]?.members.length,
          state: groups[0]?.state,
          ends: ends.map((o) => `${o.partition}:${o.high}`),
          committed: committed?.partitions.map((p) => `${p.partition}:${p.offset}`),
        };
      } finally {
        await admin.disconnect();
      }
    };
    const publisher = await open();
    let restart: Promise<void> | undefined;
    const { resolved, failures } = await publishAll(publisher, topic, 3_000, (done) => {
      // Not awaited: publishing goes on against the stopped broker.
      restart ??= done >= 1_000 ? broker.stop().then(() => broker.start()) : undefined;
    });
    expect(restart).toBeDefined();
    await restart;
    await waitFor(
      () => [...resolved].every((id) => seen.has(id)),
      90_000,
      'every resolved message after the restart',
    ).catch(async (e) => {
      console.log(`[kafka fault] restart: ${JSON.stringify(await groupFacts())}`);
      console.log(
        `[kafka fault] restart: missing ${[...resolved].filter((id) => !seen.has(id)).length} ${[...resolved]
          .filter((id) => !seen.has(id))
          .slice(0, 20)
          .join(',')} ${JSON.stringify(consumer.health())}\n`,
      );
      throw e;
    });
    // One subscription, one member: a consumer the watchdog replaced during the outage must not come back
    // (it held partitions whose batches nobody handled: their messages were never delivered).
    expect((await groupFacts()).members).toBe(1);
    const lost = [...resolved].filter((id) => !seen.has(id)).length;
    const duplicates = [...seen.values()].reduce((sum, n) => sum + n - 1, 0);
    console.log(
      `[kafka fault] restart: published ${resolved.size}, publish retries ${failures}, lost ${lost}, duplicates ${duplicates}`,
    );
    expect(lost).toBe(0);
  }, 150_000);
});
