import { driver } from '@busbar/kafka';
import { type Admin, type Consumer, Kafka, logLevel, type Producer } from 'kafkajs';
import { rawKafkaRequestReply } from './kafka-rr.js';
import { busbarSide } from './lib/busbar-side.js';
import type { BrokerBench, Running, Side, Target } from './lib/types.js';
import { BATCH, pool, uniqueGroup, uniqueTopic } from './lib/util.js';

const url = process.env.BUSBAR_BENCH_KAFKA_URL ?? 'kafka://127.0.0.1:9092';
const brokers = [url.replace(/^kafka:\/\//, '').split(',')[0] as string];
/** Same as busbar's default `partitions`. */
const PARTITIONS = 3;
/** Raw "many concurrent" publishing: kafkajs has no linger, so best practice is sends of 100 messages, 10 in flight. */
const SEND_SIZE = 100;
const SENDS_IN_FLIGHT = 10;

// Generous retries: right after createTopics a loaded broker may still answer "does not host this topic-partition".
const kafka = new Kafka({
  clientId: 'busbar-bench',
  brokers,
  logLevel: logLevel.NOTHING,
  retry: { retries: 12, initialRetryTime: 100, maxRetryTime: 2_000 },
});

async function deleteTopics(admin: Admin, prefix: string): Promise<void> {
  const topics = (await admin.listTopics()).filter((t) => t.startsWith(prefix));
  if (topics.length > 0) await admin.deleteTopics({ topics, timeout: 10_000 });
}

/** Raw kafkajs, best practice: batched sends with acks=all, eachBatch consumption with batched commits. */
async function rawSide(): Promise<Side> {
  const producer: Producer = kafka.producer({ allowAutoTopicCreation: false });
  const admin = kafka.admin();
  await Promise.all([producer.connect(), admin.connect()]);
  const created: Target[] = [];
  const send = (topic: string, count: number, payload: Buffer) =>
    producer.send({ topic, acks: -1, messages: Array.from({ length: count }, () => ({ value: payload })) });
  const requestReply = rawKafkaRequestReply(kafka, producer, admin);
  return {
    label: 'raw',
    requestReply,
    async fresh() {
      const target = { topic: uniqueTopic(), group: uniqueGroup() };
      await admin.createTopics({ topics: [{ topic: target.topic, numPartitions: PARTITIONS }], waitForLeaders: true });
      return target;
    },
    // Deleted at close: kafkajs keeps every topic it sent to in its metadata set, and a deleted one fails later sends.
    async drop(target) {
      created.push(target);
    },
    async publishBatch(target, count, payload) {
      for (let sent = 0; sent < count; sent += BATCH) await send(target.topic, Math.min(BATCH, count - sent), payload);
    },
    async publishConcurrent(target, count, payload) {
      const sends = Math.ceil(count / SEND_SIZE);
      await pool(sends, SENDS_IN_FLIGHT, (i) =>
        send(target.topic, Math.min(SEND_SIZE, count - i * SEND_SIZE), payload),
      );
    },
    async publishOne(target, payload) {
      await producer.send({ topic: target.topic, acks: -1, messages: [{ value: payload }] });
    },
    async consume(target, count, onBody): Promise<Running> {
      const consumer: Consumer = kafka.consumer({
        groupId: target.group,
        maxWaitTimeInMs: Number(process.env.RAWWAIT ?? 500),
      });
      let seen = 0;
      let resolve!: () => void;
      const done = new Promise<void>((r) => {
        resolve = r;
      });
      const joined = new Promise<void>((r) => consumer.on(consumer.events.GROUP_JOIN, () => r()));
      await consumer.connect();
      await consumer.subscribe({ topic: target.topic, fromBeginning: true });
      await consumer.run({
        autoCommit: true,
        autoCommitInterval: 100,
        partitionsConsumedConcurrently: PARTITIONS,
        eachBatchAutoResolve: false,
        eachBatch: async ({ batch, resolveOffset, heartbeat, commitOffsetsIfNecessary }) => {
          const messages = batch.messages;
          for (const m of messages) {
            if (m.value) onBody(m.value);
            if (++seen === count) resolve();
          }
          const last = messages[messages.length - 1];
          if (last) resolveOffset(last.offset);
          await commitOffsetsIfNecessary();
          await heartbeat();
        },
      });
      await joined;
      return { done, close: () => consumer.disconnect() };
    },
    async close() {
      await requestReply.close();
      await producer.disconnect();
      await admin.deleteTopics({ topics: created.map((t) => t.topic), timeout: 30_000 }).catch(() => undefined);
      await admin.deleteGroups(created.map((t) => t.group)).catch(() => undefined);
      await admin.disconnect();
    },
  };
}

export const kafkaBench: BrokerBench = {
  name: 'kafka',
  defaultMessages: 15_000,
  consumeMessages: 100_000,
  requestMessages: 5_000,
  backlog: true,
  async available() {
    const admin = new Kafka({
      clientId: 'busbar-bench',
      brokers,
      logLevel: logLevel.NOTHING,
      retry: { retries: 0 },
      connectionTimeout: 2_000,
    }).admin();
    try {
      await admin.connect();
      return true;
    } catch {
      return false;
    } finally {
      await admin.disconnect().catch(() => undefined);
    }
  },
  async version() {
    const admin = kafka.admin();
    await admin.connect();
    try {
      const cluster = await admin.describeCluster();
      const configs = await admin.describeConfigs({
        resources: [
          {
            type: 4,
            name: String(cluster.controller ?? cluster.brokers[0]?.nodeId ?? 1),
            configNames: ['inter.broker.protocol.version'],
          },
        ],
        includeSynonyms: false,
      });
      const v = configs.resources[0]?.configEntries[0]?.configValue;
      return `Kafka ${v ?? '?'} (KRaft, ${cluster.brokers.length} broker, acks=all)`;
    } catch {
      return 'Kafka (acks=all)';
    } finally {
      await admin.disconnect();
    }
  },
  raw: rawSide,
  // Loaded here, not at the top: @platformatic/kafka needs Node >= 22.22 / 24.6, and without it only these rows go.
  references: async () => {
    const { platformaticSide } = await import('./kafka-platformatic.js');
    return [{ side: await platformaticSide(brokers), scenarios: ['publishBatch', 'publishConcurrent', 'consume'] }];
  },
  async busbar() {
    const admin = kafka.admin();
    await admin.connect();
    const created: Target[] = [];
    const side = await busbarSide('busbar', {
      connect: { url, driver },
      cleanup: async (topic, group) => {
        created.push({ topic, group });
      },
      // The request topic a responder created.
      requestCleanup: async (topic, group) => {
        created.push({ topic, group });
      },
    });
    return {
      ...side,
      // Deleted only after the bus closed (see the raw side's drop).
      close: async () => {
        await side.close();
        for (const t of created) await deleteTopics(admin, t.topic).catch(() => undefined);
        await admin.deleteGroups(created.map((t) => t.group)).catch(() => undefined);
        await admin.disconnect();
      },
    };
  },
};
