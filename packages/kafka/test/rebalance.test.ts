import { type Bus, connect, type Message, silentLogger } from '@busbar/core';
import { brokerAvailable, brokerUrls, sleep, uniqueName, waitFor } from '@busbar/testing';
import kafkajs from 'kafkajs';
import { afterAll, describe, expect, it } from 'vitest';
import { driver, type KafkaRaw } from '../src/index.js';

const ok = await brokerAvailable('kafka');

describe.runIf(ok)('kafka rebalances', () => {
  const buses: Bus[] = [];
  const open = async () => {
    const bus = await connect({
      url: brokerUrls.kafka,
      driver,
      logger: silentLogger,
      sessionTimeoutMs: 6_000,
      heartbeatIntervalMs: 300,
      rebalanceTimeoutMs: 6_000,
      maxWaitTimeMs: 200,
    });
    buses.push(bus);
    return bus;
  };
  const admin = new kafkajs.Kafka({
    brokers: [new URL(brokerUrls.kafka).host],
    logLevel: kafkajs.logLevel.NOTHING,
  }).admin();

  afterAll(async () => {
    await Promise.all(buses.map((bus) => bus.close().catch(() => undefined)));
    await admin.disconnect();
  });

  it('a third consumer joining and one leaving mid-run: nothing lost, nothing committed before it was processed', async () => {
    await admin.connect();
    const topic = uniqueName('rebalance');
    const group = uniqueName('g');
    const processed = new Map<number, Set<number>>();
    const seen = new Map<string, number>();
    const handler = async (m: Message<unknown>) => {
      await sleep(Math.random() * 3);
      const raw = m.raw as KafkaRaw;
      let offsets = processed.get(raw.partition);
      if (!offsets) {
        offsets = new Set();
        processed.set(raw.partition, offsets);
      }
      offsets.add(Number(raw.offset));
      seen.set(m.id, (seen.get(m.id) ?? 0) + 1);
    };
    const options = { group, concurrency: 4 };
    const [a, b] = await Promise.all([open(), open()]);
    await a.subscribe(topic, handler, options);
    const leaving = await b.subscribe(topic, handler, options);

    // Every committed offset, sampled while the group changes, must sit on top of processed messages only.
    let violations = 0;
    let samples = 0;
    const check = async () => {
      const [entry] = await admin.fetchOffsets({ groupId: group, topics: [topic] });
      samples++;
      for (const { partition, offset } of entry?.partitions ?? []) {
        const done = processed.get(partition) ?? new Set<number>();
        for (let o = 0; o < Number(offset); o++) if (!done.has(o)) violations++;
      }
    };
    let sampling = true;
    const sampler = (async () => {
      while (sampling) {
        await check();
        await sleep(150);
      }
    })();

    const publisher = await open();
    const ids: string[] = [];
    for (let wave = 0; wave < 30; wave++) {
      if (wave === 10) await (await open()).subscribe(topic, handler, options);
      if (wave === 20) await leaving.close();
      ids.push(
        ...(await publisher.publishBatch(
          topic,
          Array.from({ length: 100 }, (_, n) => ({ payload: { wave, n }, key: `k${n % 10}` })),
        )),
      );
      await sleep(50);
    }
    await waitFor(() => ids.every((id) => seen.has(id)), 60_000, 'every message');
    sampling = false;
    await sampler;
    await Promise.all(buses.map((bus) => bus.close()));
    await check();
    const duplicates = [...seen.values()].reduce((sum, n) => sum + n - 1, 0);
    console.log(
      `[kafka fault] rebalance: published ${ids.length}, lost ${ids.filter((id) => !seen.has(id)).length}, duplicates ${duplicates}, commit samples ${samples}, commits ahead of processing ${violations}`,
    );
    expect(violations).toBe(0);
    expect(samples).toBeGreaterThan(5);
    // The final commit covers everything: a restarted group would not see any of it again.
    const [final] = await admin.fetchOffsets({ groupId: group, topics: [topic] });
    const committed = (final?.partitions ?? []).reduce((sum, p) => sum + Number(p.offset), 0);
    expect(committed).toBe(3_000);
  }, 120_000);
});
