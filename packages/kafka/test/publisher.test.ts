import type { OutgoingRecord } from '@busbar/core/transport';
import { brokerAvailable, brokerUrls, uniqueName } from '@busbar/testing';
import type { Producer } from 'kafkajs';
import { afterAll, describe, expect, it } from 'vitest';
import { CompressionTypes } from '../src/internals.js';
import { Publisher } from '../src/publisher.js';
import { patchedKafka, readRecords } from './native-client.js';

const ok = await brokerAvailable('kafka');

const record = (topic: string, n: number): OutgoingRecord => ({
  topic,
  id: `id-${n}`,
  key: undefined,
  headers: {},
  body: new TextEncoder().encode(String(n)),
  contentType: 'text/plain',
  timestamp: Date.now(),
});

describe.runIf(ok)('kafka publisher: a burst of publishes to a new topic (real Kafka)', () => {
  const kafka = patchedKafka([new URL(brokerUrls.kafka).host]);
  const admin = kafka.admin();
  const publishers: Publisher[] = [];
  afterAll(async () => {
    for (const p of publishers) await p.close();
    await admin.disconnect();
  });

  it('creates the topic once, checks the producer once, and sends the burst in a few requests, in order', async () => {
    await admin.connect();
    const calls = { ensure: 0, list: 0, produce: 0 };
    // The Produce requests of the publisher's producer, counted by kafkajs' own instrumentation event.
    const counting = Object.create(kafka) as typeof kafka;
    counting.producer = (config) => {
      const producer: Producer = kafka.producer(config);
      producer.on(producer.events.REQUEST, (e) => {
        if (e.payload.apiName === 'Produce') calls.produce++;
      });
      return producer;
    };
    const publisher = new Publisher({
      kafka: counting,
      compression: CompressionTypes.None,
      maxBatchBytes: 900_000,
      maxMessageBytes: 1_000_000,
      timeoutMs: 30_000,
      secrets: [],
      ensureTopics: async (topics) => {
        calls.ensure++;
        await admin.createTopics({ topics: [...topics].map((topic) => ({ topic })), waitForLeaders: true });
      },
      listTopics: () => {
        calls.list++;
        return admin.listTopics();
      },
      onState: () => undefined,
    });
    publishers.push(publisher);
    await publisher.connect();
    // One earlier topic, so that a new one makes the producer check the topics it knows (#checkGone).
    const earlier = uniqueName('burst-earlier');
    await publisher.publish([record(earlier, 0)]);
    expect(calls).toMatchObject({ ensure: 1, list: 0 });

    const topic = uniqueName('burst');
    const count = 1_000;
    await Promise.all(Array.from({ length: count }, (_, n) => publisher.publish([record(topic, n)])));
    // Before: one creation and one topic listing per publish (1,000 each), and the burst left in sends of 1 to 100.
    expect(calls.ensure).toBe(2);
    expect(calls.list).toBe(1);
    expect(calls.produce).toBeLessThanOrEqual(1 + 3);
    const read = await readRecords(topic, count);
    expect(read.map((m) => String(m.value))).toEqual(Array.from({ length: count }, (_, n) => String(n)));

    // The bus still works: a later publish to the topic goes straight out.
    await publisher.publish([record(topic, count)]);
    expect(calls.ensure).toBe(2);
  });
});
