/**
 * The brokers of the scale test (`bench/scale.ts`): how a process connects busbar to each and how the
 * objects a run created are deleted. Children rebuild the connect options from the broker name and URL
 * alone, so everything here is plain data plus the driver.
 */
import type { ConnectOptions } from '@busbar/core';
import { driver as kafkaDriver } from '@busbar/kafka';
import { driver as mqttDriver } from '@busbar/mqtt';
import { driver as natsDriver } from '@busbar/nats';
import { driver as rabbitDriver } from '@busbar/rabbitmq';
import { driver as redisDriver } from '@busbar/redis';
import amqplib from 'amqplib';
import { Redis } from 'ioredis';
import { Kafka, logLevel } from 'kafkajs';
import { connect as natsConnect } from 'nats';
import { sleep } from './util.js';

export const SCALE_BROKERS = ['redis', 'nats', 'rabbitmq', 'kafka', 'mqtt'] as const;
export type ScaleBroker = (typeof SCALE_BROKERS)[number];

/** Same defaults and environment overrides as the main bench; MQTT's URL comes from the private broker. */
export const DEFAULT_URLS: Record<Exclude<ScaleBroker, 'mqtt'>, string> = {
  redis: process.env.BUSBAR_BENCH_REDIS_URL ?? 'redis://127.0.0.1:6379',
  nats: process.env.BUSBAR_BENCH_NATS_URL ?? 'nats://127.0.0.1:4222',
  rabbitmq: process.env.BUSBAR_BENCH_RABBITMQ_URL ?? 'amqp://guest:guest@127.0.0.1:5672',
  kafka: process.env.BUSBAR_BENCH_KAFKA_URL ?? 'kafka://127.0.0.1:9092',
};

const DRIVERS = {
  redis: redisDriver,
  nats: natsDriver,
  rabbitmq: rabbitDriver,
  kafka: kafkaDriver,
  mqtt: mqttDriver,
};

/** Kafka topics get this many partitions: a group member beyond the partition count would sit idle. */
export const KAFKA_PARTITIONS = 4;

/**
 * What a scale process passes to `connect()`. `member` names an MQTT group member's session family: it must be
 * distinct per process (two processes with one client id would take each other's session) and stable for a
 * process that resumes a session with a backlog.
 */
export function connectOptions(broker: ScaleBroker, url: string, member?: string): ConnectOptions {
  const base: ConnectOptions = { url, driver: DRIVERS[broker] };
  if (broker === 'kafka') return { ...base, partitions: KAFKA_PARTITIONS };
  if (broker === 'mqtt') {
    return { ...base, sessionExpirySeconds: 600, ...(member ? { clientIdBase: member } : {}) };
  }
  return base;
}

/** The TCP port a process's connections to the broker go to (for counting them). */
export function brokerPort(url: string): number {
  const host = url.replace(/^[a-z+]+:\/\//, '').replace(/^[^@]*@/, '');
  return Number(/:(\d+)/.exec(host)?.[1]);
}

async function deleteRedisKeys(url: string, prefix: string): Promise<void> {
  const redis = new Redis(url, { maxRetriesPerRequest: 3 });
  try {
    let cursor = '0';
    do {
      const [next, keys] = await redis.scan(cursor, 'MATCH', `busbar:{${prefix}*`, 'COUNT', 1000);
      cursor = next;
      if (keys.length > 0) await redis.del(...keys);
    } while (cursor !== '0');
  } finally {
    redis.disconnect();
  }
}

async function deleteNatsStreams(url: string, topics: readonly string[]): Promise<void> {
  const nc = await natsConnect({ servers: url.replace(/^nats:\/\//, ''), name: 'busbar-scale' });
  try {
    const jsm = await nc.jetstreamManager();
    // One stream per first topic segment (the driver's default mapping).
    const streams = new Set(topics.map((t) => `BUSBAR_${t.split('.')[0]}`));
    for (const s of streams) await jsm.streams.delete(s).catch(() => undefined);
  } finally {
    await nc.close();
  }
}

async function deleteRabbitQueues(url: string, topics: readonly string[], group: string): Promise<void> {
  const conn = await amqplib.connect(url);
  try {
    const ch = await conn.createChannel();
    // The group queue is `<topic>.<group>`; the bindings go with it (the shared exchange stays).
    for (const t of topics) await ch.deleteQueue(`${t}.${group}`);
  } finally {
    await conn.close();
  }
}

async function deleteKafka(url: string, prefix: string, groups: readonly string[]): Promise<void> {
  const brokers = [url.replace(/^kafka:\/\//, '').split(',')[0] as string];
  const admin = new Kafka({ clientId: 'busbar-scale', brokers, logLevel: logLevel.NOTHING }).admin();
  await admin.connect();
  try {
    // Main and retry topics (`<topic>.<group>.retry`) share the run's prefix. Listed again after a pause: a
    // child that died mid-subscribe leaves CreateTopics requests the broker is still working through.
    for (let round = 0; round < 3; round++) {
      const topics = (await admin.listTopics()).filter((t) => t.startsWith(prefix));
      if (topics.length === 0) break;
      for (let i = 0; i < topics.length; i += 200) {
        await admin.deleteTopics({ topics: topics.slice(i, i + 200), timeout: 60_000 });
      }
      await sleep(3_000);
    }
    await admin.deleteGroups([...groups]).catch(() => undefined);
  } finally {
    await admin.disconnect();
  }
}

/**
 * Deletes what busbar created for `topics` (all starting with `prefix`) and `groups`. MQTT: nothing, the
 * private broker is stopped with its sessions.
 */
export async function cleanup(
  broker: ScaleBroker,
  url: string,
  prefix: string,
  topics: readonly string[],
  groups: readonly string[],
): Promise<void> {
  if (broker === 'redis') await deleteRedisKeys(url, prefix);
  else if (broker === 'nats') await deleteNatsStreams(url, topics);
  else if (broker === 'rabbitmq') for (const g of groups) await deleteRabbitQueues(url, topics, g);
  else if (broker === 'kafka') await deleteKafka(url, prefix, groups);
}

/** Prefix of every topic and group of this run: unique per run, one first topic segment per topic below it. */
export const RUN = `scale${process.pid.toString(36)}${Date.now().toString(36)}`;

/** The topics of scale (b): each its own first segment (NATS: its own stream), all under `prefix`. */
export function manyTopics(prefix: string, count: number): string[] {
  return Array.from({ length: count }, (_, i) => `${prefix}x${i}.t`);
}
