import { randomUUID } from 'node:crypto';
import { type Bus, connect, silentLogger } from '@busbar/core';
import { brokerAvailable, brokerUrls, uniqueName, waitFor } from '@busbar/testing';
import type { Consumer, KafkaMessage, Producer } from 'kafkajs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { driver } from '../src/index.js';
import { Kafka, logLevel } from '../src/internals.js';

const ok = await brokerAvailable('kafka');

// Spring Kafka's header names (KafkaHeaders.REPLY_TOPIC, CORRELATION_ID, REPLY_PARTITION).
const REPLY_TOPIC = 'kafka_replyTopic';
const CORRELATION_ID = 'kafka_correlationId';
const REPLY_PARTITION = 'kafka_replyPartition';

describe.runIf(ok)('kafka request/reply with plain kafkajs clients (Spring ReplyingKafkaTemplate headers)', () => {
  const kafka = new Kafka({ brokers: [new URL(brokerUrls.kafka).host], logLevel: logLevel.NOTHING });
  const admin = kafka.admin();
  let producer: Producer;
  const consumers: Consumer[] = [];
  const buses: Bus[] = [];
  const open = async (name = uniqueName('rr')) => {
    const bus = await connect({ url: brokerUrls.kafka, driver, logger: silentLogger, name, maxWaitTimeMs: 100 });
    buses.push(bus);
    return bus;
  };

  /** A plain kafkajs consumer of `topic` (from its start), each record to `onMessage`. */
  const consume = async (topic: string, onMessage: (message: KafkaMessage, partition: number) => Promise<void>) => {
    const consumer = kafka.consumer({ groupId: uniqueName('raw'), maxWaitTimeInMs: 100 });
    consumers.push(consumer);
    let joined = false;
    consumer.on(consumer.events.GROUP_JOIN, () => {
      joined = true;
    });
    await consumer.connect();
    await consumer.subscribe({ topics: [topic], fromBeginning: true });
    await consumer.run({ eachMessage: ({ message, partition }) => onMessage(message, partition) });
    await waitFor(() => joined, 20_000, `raw consumer of ${topic} joined`);
  };

  beforeAll(async () => {
    await admin.connect();
    producer = kafka.producer();
    await producer.connect();
  });

  afterAll(async () => {
    await Promise.all(buses.map((bus) => bus.close().catch(() => undefined)));
    await Promise.all(consumers.map((c) => c.disconnect().catch(() => undefined)));
    await producer?.disconnect();
    await admin.disconnect();
  });

  it('a raw requester (reply topic, binary correlation id, reply partition) is answered by a busbar responder', async () => {
    const bus = await open();
    const topic = uniqueName('rr-raw-in');
    await bus.respond(topic, (m) => ({ echo: m.payload, tenant: m.headers.tenant }), { group: uniqueName('g') });
    const replyTopic = uniqueName('raw-replies');
    await admin.createTopics({ waitForLeaders: true, topics: [{ topic: replyTopic, numPartitions: 2 }] });
    const replies: { message: KafkaMessage; partition: number }[] = [];
    await consume(replyTopic, async (message, partition) => {
      replies.push({ message, partition });
    });
    // What Spring's template sends: a 16-byte binary correlation id, the reply topic, a 4-byte reply partition.
    const correlation = Buffer.from(randomUUID().replaceAll('-', ''), 'hex');
    const partition = Buffer.alloc(4);
    partition.writeInt32BE(1);
    await producer.send({
      topic,
      messages: [
        {
          value: JSON.stringify({ n: 7 }),
          headers: {
            [REPLY_TOPIC]: replyTopic,
            [CORRELATION_ID]: correlation,
            [REPLY_PARTITION]: partition,
            tenant: 'acme',
          },
        },
      ],
    });
    await waitFor(() => replies.length >= 1, 20_000, 'the reply');
    const [reply] = replies;
    expect(reply?.partition).toBe(1);
    expect(Buffer.compare(reply?.message.headers?.[CORRELATION_ID] as Buffer, correlation)).toBe(0);
    expect(JSON.parse(String(reply?.message.value))).toEqual({ echo: { n: 7 }, tenant: 'acme' });
    // A reply is not a message with an id of its own: the correlation id identifies it.
    expect(Object.keys(reply?.message.headers ?? {})).not.toContain('busbar-id');
  }, 60_000);

  it('a request without reply headers, or to a reply topic that does not exist, is dropped (no topic made); the next is answered', async () => {
    const bus = await open();
    const topic = uniqueName('rr-bad-in');
    let handled = 0;
    await bus.respond(topic, (m) => {
      handled++;
      return m.payload;
    });
    const gone = uniqueName('gone-replies');
    const replyTopic = uniqueName('raw-replies');
    await admin.createTopics({ waitForLeaders: true, topics: [{ topic: replyTopic, numPartitions: 1 }] });
    const replies: KafkaMessage[] = [];
    await consume(replyTopic, async (message) => {
      replies.push(message);
    });
    await producer.send({
      topic,
      messages: [
        { value: '1' },
        { value: '2', headers: { [REPLY_TOPIC]: 'no/such topic', [CORRELATION_ID]: 'c2' } },
        { value: '3', headers: { [REPLY_TOPIC]: gone, [CORRELATION_ID]: 'c3' } },
        { value: '4', headers: { [REPLY_TOPIC]: replyTopic, [CORRELATION_ID]: 'c4' } },
      ],
    });
    await waitFor(() => replies.length >= 1, 20_000, 'the reply to the good request');
    expect(String(replies[0]?.headers?.[CORRELATION_ID])).toBe('c4');
    expect(String(replies[0]?.value)).toBe('4');
    // Only the requests with a reply topic to answer on reached the handler; the missing topic was not created.
    expect(handled).toBe(2);
    expect(await admin.listTopics()).not.toContain(gone);
  }, 60_000);

  it('a reply partition the reply topic does not have drops that reply and holds nothing else back', async () => {
    const bus = await open();
    const topic = uniqueName('rr-badpart');
    let handled = 0;
    await bus.respond(
      topic,
      (m) => {
        handled++;
        return m.payload;
      },
      { group: uniqueName('g') },
    );
    const replyTopic = uniqueName('raw-replies');
    await admin.createTopics({ waitForLeaders: true, topics: [{ topic: replyTopic, numPartitions: 1 }] });
    const replies: KafkaMessage[] = [];
    await consume(replyTopic, async (message) => {
      replies.push(message);
    });
    const partition = (n: number) => {
      const bytes = Buffer.alloc(4);
      bytes.writeInt32BE(n);
      return bytes;
    };
    const request = (value: string, p: number) => ({
      value,
      headers: { [REPLY_TOPIC]: replyTopic, [CORRELATION_ID]: `c-${value}`, [REPLY_PARTITION]: partition(p) },
    });
    await producer.send({ topic, messages: [request('99', 99), request('-7', -7)] });
    await waitFor(() => handled === 2, 20_000, 'both requests handled');
    // Those replies went nowhere; an unrelated publish is not held behind them (it waited the whole publish
    // timeout for them, and the publisher opened a producer connection per try meanwhile).
    const started = Date.now();
    await bus.publish(uniqueName('rr-unrelated'), 1);
    expect(Date.now() - started).toBeLessThan(5_000);
    await producer.send({ topic, messages: [request('0', 0)] });
    await waitFor(() => replies.length >= 1, 20_000, 'the reply to the good request');
    expect(replies.map((r) => String(r.value))).toEqual(['0']);
  }, 60_000);

  it('a busbar request is answered by a raw kafkajs consumer + producer that copies the correlation id', async () => {
    const bus = await open();
    const topic = uniqueName('rr-raw-out');
    await admin.createTopics({ waitForLeaders: true, topics: [{ topic, numPartitions: 1 }] });
    await consume(topic, async (message) => {
      const replyTo = String(message.headers?.[REPLY_TOPIC]);
      const { n } = JSON.parse(String(message.value)) as { n: number };
      await producer.send({
        topic: replyTo,
        messages: [
          {
            value: JSON.stringify({ doubled: n * 2 }),
            headers: {
              [CORRELATION_ID]: message.headers?.[CORRELATION_ID] as Buffer,
              'content-type': 'application/json',
            },
          },
        ],
      });
    });
    expect(await bus.request(topic, { n: 21 }, { timeoutMs: 20_000 })).toEqual({ doubled: 42 });
  }, 60_000);

  it('one reply topic per bus, deleted at close; a round trip costs a few milliseconds (p50 printed)', async () => {
    const name = uniqueName('rr-latency');
    const requester = await open(name);
    const responder = await open();
    const topic = uniqueName('rr-echo');
    await responder.respond(topic, (m) => m.payload);
    await requester.request(topic, 0, { timeoutMs: 20_000 });
    const times: number[] = [];
    for (let i = 1; i <= 200; i++) {
      const started = performance.now();
      expect(await requester.request(topic, i, { timeoutMs: 5_000 })).toBe(i);
      times.push(performance.now() - started);
    }
    times.sort((a, b) => a - b);
    const p50 = times[100] as number;
    const p99 = times[198] as number;
    console.log(`[kafka request/reply] sequential round trip: p50 ${p50.toFixed(1)} ms, p99 ${p99.toFixed(1)} ms`);
    expect(p50).toBeLessThan(250);
    const replyTopics = (await admin.listTopics()).filter((t) => t.startsWith(`${name}.replies.`));
    expect(replyTopics).toHaveLength(1);
    await requester.close();
    await waitFor(
      async () => !(await admin.listTopics()).includes(replyTopics[0] as string),
      20_000,
      'the reply topic deleted',
    );
  }, 90_000);
});
