import amqplib from 'amqplib';
import { Redis } from 'ioredis';
import { Kafka, logLevel } from 'kafkajs';
import { connect as natsConnect } from 'nats';
import type { Side, Target } from '../lib/types.js';
import { type ChannelsAdapter, moleculerSide } from './moleculer.js';

/** The same brokers (and environment variables) as the main bench. */
const urls = {
  redis: process.env.BUSBAR_BENCH_REDIS_URL ?? 'redis://127.0.0.1:6379',
  nats: process.env.BUSBAR_BENCH_NATS_URL ?? 'nats://127.0.0.1:4222',
  rabbitmq: process.env.BUSBAR_BENCH_RABBITMQ_URL ?? 'amqp://guest:guest@127.0.0.1:5672',
  kafka: process.env.BUSBAR_BENCH_KAFKA_URL ?? 'kafka://127.0.0.1:9092',
};

/** Redis Streams: the stream is the channel name; the group is created at the first subscribe ('$'). */
async function redisAdapter(): Promise<ChannelsAdapter> {
  const admin = new Redis(urls.redis);
  return {
    adapter: { type: 'Redis', options: { redis: urls.redis } },
    async drop(target) {
      await admin.del(target.topic);
    },
    async close() {
      admin.disconnect();
    },
  };
}

/** JetStream: a stream per channel (its name with '.' -> '_'), a durable push consumer with a queue group. */
async function natsAdapter(): Promise<ChannelsAdapter> {
  const nc = await natsConnect({ servers: urls.nats.replace(/^nats:\/\//, '') });
  const jsm = await nc.jetstreamManager();
  return {
    adapter: { type: 'NATS', options: { nats: { url: urls.nats } } },
    async drop(target) {
      await jsm.streams.delete(target.topic.split('.').join('_'));
    },
    close: () => nc.close(),
  };
}

/** AMQP: a fanout exchange per channel, a queue `<group>.<channel>` bound to it (the adapter's defaults). */
async function amqpAdapter(): Promise<ChannelsAdapter> {
  const conn = await amqplib.connect(urls.rabbitmq);
  const ch = await conn.createChannel();
  const exchanges: string[] = [];
  return {
    adapter: { type: 'AMQP', options: { amqp: { url: urls.rabbitmq } } },
    // Exchanges only at close: its publishes are unconfirmed, so the last ones of a block may still be on their
    // way, and a publish to a deleted exchange closes the adapter's channel (to a queue-less one it is dropped).
    async drop(target) {
      await ch.deleteQueue(`${target.group}.${target.topic}`);
      exchanges.push(target.topic);
    },
    async close() {
      for (const exchange of exchanges) await ch.deleteExchange(exchange).catch(() => undefined);
      await conn.close();
    },
  };
}

/** Kafka: the topic made first with busbar's 3 partitions; a new group reads it from its start. */
async function kafkaAdapter(): Promise<ChannelsAdapter> {
  const brokers = [urls.kafka.replace(/^kafka:\/\//, '').split(',')[0] as string];
  const admin = new Kafka({ clientId: 'busbar-bench-peers', brokers, logLevel: logLevel.NOTHING }).admin();
  await admin.connect();
  const created: Target[] = [];
  return {
    adapter: { type: 'Kafka', options: { kafka: { brokers } } },
    channel: { kafka: { fromBeginning: true } },
    async prepare(topic) {
      await admin.createTopics({ topics: [{ topic, numPartitions: 3 }], waitForLeaders: true });
    },
    // At close, as on the raw side: a producer that sent to a deleted topic keeps asking for its metadata.
    async drop(target) {
      created.push(target);
    },
    async close() {
      await admin.deleteTopics({ topics: created.map((t) => t.topic), timeout: 30_000 }).catch(() => undefined);
      await admin.deleteGroups(created.map((t) => `${t.group}:${t.topic}`)).catch(() => undefined);
      await admin.disconnect();
    },
  };
}

const ADAPTERS: Record<string, () => Promise<ChannelsAdapter>> = {
  redis: redisAdapter,
  nats: natsAdapter,
  rabbitmq: amqpAdapter,
  kafka: kafkaAdapter,
};

/** The @moleculer/channels side on the bench's broker `transport`, or undefined where it has no adapter (MQTT). */
export async function channelsSide(transport: string): Promise<Side | undefined> {
  const adapter = ADAPTERS[transport];
  return adapter ? moleculerSide('@moleculer/channels', await adapter()) : undefined;
}
