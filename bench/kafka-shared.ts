import type { Consumer, ConsumerRunConfig, Kafka } from 'kafkajs-stock';
import type { Side, Target } from './lib/types.js';
import { BATCH, pool, uniqueGroup, uniqueTopic } from './lib/util.js';

/** Same as busbar's default `partitions`. */
export const PARTITIONS = 3;
/** Raw "many concurrent" publishing: kafkajs has no linger, so best practice is sends of 100 messages, 10 in flight. */
const SEND_SIZE = 100;
const SENDS_IN_FLIGHT = 10;
/** As busbar's Kafka driver: a fetch waits at most this long for data. */
export const MAX_WAIT_MS = 500;

/** What a Kafka client must offer for the publishing half of a raw side. */
export interface KafkaClient {
  createTopic(topic: string): Promise<void>;
  /** One produce request of `count` copies of `payload`, acks=all. */
  send(topic: string, count: number, payload: Buffer): Promise<unknown>;
}

export type KafkaPublishing = Pick<Side, 'fresh' | 'drop' | 'publishBatch' | 'publishConcurrent' | 'publishOne'> & {
  /** The blocks' topics and groups, deleted when the side closes. */
  readonly created: readonly Target[];
};

/**
 * The publishing half both raw Kafka sides (kafkajs, @platformatic/kafka) share, so they differ only in the
 * client: a topic of PARTITIONS per block, sends of BATCH (publishBatch) or SEND_SIZE x SENDS_IN_FLIGHT
 * (concurrent), and topics deleted only at close.
 */
export function kafkaPublishing(client: KafkaClient): KafkaPublishing {
  const created: Target[] = [];
  return {
    created,
    async fresh() {
      const target = { topic: uniqueTopic(), group: uniqueGroup() };
      await client.createTopic(target.topic);
      return target;
    },
    // Deleted at close: kafkajs keeps every topic it sent to in its metadata set, and a deleted one fails later sends.
    async drop(target) {
      created.push(target);
    },
    async publishBatch(target, count, payload) {
      for (let sent = 0; sent < count; sent += BATCH)
        await client.send(target.topic, Math.min(BATCH, count - sent), payload);
    },
    async publishConcurrent(target, count, payload) {
      const sends = Math.ceil(count / SEND_SIZE);
      await pool(sends, SENDS_IN_FLIGHT, (i) =>
        client.send(target.topic, Math.min(SEND_SIZE, count - i * SEND_SIZE), payload),
      );
    },
    async publishOne(target, payload) {
      await client.send(target.topic, 1, payload);
    },
  };
}

/** A kafkajs group member of `groupId` on `topic` (from its start: the topics are new), running `run`; resolves once it joined. */
export async function groupConsumer(
  kafka: Kafka,
  groupId: string,
  topic: string,
  run: ConsumerRunConfig,
): Promise<Consumer> {
  const consumer = kafka.consumer({ groupId, maxWaitTimeInMs: MAX_WAIT_MS });
  const joined = new Promise<void>((resolve) => consumer.on(consumer.events.GROUP_JOIN, () => resolve()));
  await consumer.connect();
  await consumer.subscribe({ topic, fromBeginning: true });
  await consumer.run(run);
  await joined;
  return consumer;
}
