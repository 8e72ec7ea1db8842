import { driver } from '@busbar/kafka';
// kafkajs as npm installs it, for the raw sides: @busbar/kafka replaces kafkajs' record codec in the copy it loads
// (packages/kafka/README.md, "kafkajs internals"), which would speed up a raw side sharing it.
import { type Admin, type Consumer, Kafka, type KafkaMessage, logLevel, type Producer } from 'kafkajs-stock';
import { rawKafkaRequestReply } from './kafka-rr.js';
import { groupConsumer, kafkaPublishing, PARTITIONS } from './kafka-shared.js';
import { busbarSide } from './lib/busbar-side.js';
import type { BrokerBench, Running, Side, Target } from './lib/types.js';
import { Countdown } from './lib/util.js';

const url = process.env.BUSBAR_BENCH_KAFKA_URL ?? 'kafka://127.0.0.1:9092';
const brokers = [url.replace(/^kafka:\/\//, '').split(',')[0] as string];

// Generous retries: right after createTopics a loaded broker may still answer "does not host this topic-partition".
const EMPTY = Buffer.alloc(0);

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

/**
 * A raw group member: `handle` gets each fetched partition batch and resolves the offsets it handled; offsets are
 * committed every 100 ms, partitions consumed concurrently.
 */
function member(
  target: Target,
  handle: (messages: readonly KafkaMessage[], resolveOffset: (offset: string) => void) => void,
): Promise<Consumer> {
  return groupConsumer(kafka, target.group, target.topic, {
    autoCommit: true,
    autoCommitInterval: 100,
    partitionsConsumedConcurrently: PARTITIONS,
    eachBatchAutoResolve: false,
    eachBatch: async ({ batch, resolveOffset, heartbeat, commitOffsetsIfNecessary }) => {
      handle(batch.messages, resolveOffset);
      await commitOffsetsIfNecessary();
      await heartbeat();
    },
  });
}

/** Raw kafkajs, best practice: batched sends with acks=all, eachBatch consumption with batched commits. */
async function rawSide(): Promise<Side> {
  const producer: Producer = kafka.producer({ allowAutoTopicCreation: false });
  const admin = kafka.admin();
  await Promise.all([producer.connect(), admin.connect()]);
  const publishing = kafkaPublishing({
    async createTopic(topic) {
      await admin.createTopics({ topics: [{ topic, numPartitions: PARTITIONS }], waitForLeaders: true });
    },
    send: (topic, count, payload) =>
      producer.send({ topic, acks: -1, messages: Array.from({ length: count }, () => ({ value: payload })) }),
  });
  const requestReply = rawKafkaRequestReply(kafka, producer, admin);
  return {
    label: 'raw',
    requestReply,
    ...publishing,
    async consume(target, count, onBody): Promise<Running> {
      const handled = new Countdown(count);
      const consumer = await member(target, (messages, resolveOffset) => {
        for (const m of messages) {
          if (m.value) onBody(m.value);
          handled.add();
        }
        const last = messages[messages.length - 1];
        if (last) resolveOffset(last.offset);
      });
      return { done: handled.done, close: () => consumer.disconnect() };
    },
    // eachBatch hands over what one fetch brought for a partition (often more than maxSize): handled in slices
    // of maxSize, each slice's offset resolved after it (what a bulk insert per slice would do).
    async consumeBatch(target, count, batch, onBatch): Promise<Running> {
      const handled = new Countdown(count);
      const consumer = await member(target, (messages, resolveOffset) => {
        for (let from = 0; from < messages.length; from += batch.maxSize) {
          const slice = messages.slice(from, from + batch.maxSize);
          onBatch(slice.map((m) => m.value ?? EMPTY));
          resolveOffset((slice[slice.length - 1] as KafkaMessage).offset);
          handled.add(slice.length);
        }
      });
      return { done: handled.done, close: () => consumer.disconnect() };
    },
    async close() {
      await requestReply.close();
      await producer.disconnect();
      const created = publishing.created;
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
  // No consume row: its consumer fetches up to 50 MB at once, so a block's backlog arrives decoded before its first
  // message and the drain's window timed a loop (2.1M msgs/s, 0.6 us); kafka-clients.ts measures it from subscribe.
  references: async () => {
    const { platformaticSide } = await import('./kafka-platformatic.js');
    return [{ side: await platformaticSide(brokers), scenarios: ['publishBatch', 'publishConcurrent'] }];
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
