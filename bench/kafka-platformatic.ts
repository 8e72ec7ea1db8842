import {
  Admin,
  Consumer,
  MessagesStreamFallbackModes,
  MessagesStreamModes,
  ProduceAcks,
  Producer,
} from '@platformatic/kafka';
import type { Running, Side, Target } from './lib/types.js';
import { BATCH, pool, uniqueGroup, uniqueTopic } from './lib/util.js';

/** Same as busbar's default `partitions` and the kafkajs raw side. */
const PARTITIONS = 3;
/** As the kafkajs raw side: sends of 100, 10 in flight, for "many concurrent publishes" (no linger in the client). */
const SEND_SIZE = 100;
const SENDS_IN_FLIGHT = 10;

/**
 * @platformatic/kafka (the fastest maintained Node Kafka client, issue 18) as a second raw reference, used
 * the fast way: a non-idempotent producer with acks=all (the same durability as the kafkajs raw side; its
 * idempotent producer needs care with concurrent sends, PERFORMANCE.md), batched sends, and a group consumer
 * stream read in flowing mode with interval autocommit.
 */
export async function platformaticSide(brokers: readonly string[]): Promise<Side> {
  const base = { clientId: 'busbar-bench-platformatic', bootstrapBrokers: [...brokers], retries: 12, retryDelay: 250 };
  const producer = new Producer({ ...base, idempotent: false, acks: ProduceAcks.ALL, autocreateTopics: false });
  const admin = new Admin(base);
  const created: Target[] = [];
  const send = (topic: string, count: number, payload: Buffer) =>
    producer.send({ messages: Array.from({ length: count }, () => ({ topic, value: payload })) });
  return {
    label: 'platformatic',
    async fresh() {
      const target = { topic: uniqueTopic(), group: uniqueGroup() };
      await admin.createTopics({ topics: [target.topic], partitions: PARTITIONS, replicas: 1 });
      return target;
    },
    // Deleted at close, as on the kafkajs side: a client that sent to a topic may still ask for its metadata.
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
      await send(target.topic, 1, payload);
    },
    async consume(target, count, onBody): Promise<Running> {
      const consumer = new Consumer({ ...base, groupId: target.group, maxWaitTime: 500 });
      let seen = 0;
      let resolve!: () => void;
      const done = new Promise<void>((r) => {
        resolve = r;
      });
      const stream = await consumer.consume({
        topics: [target.topic],
        mode: MessagesStreamModes.COMMITTED,
        fallbackMode: MessagesStreamFallbackModes.EARLIEST,
        autocommit: 100,
      });
      stream.on('data', (message) => {
        onBody(message.value);
        if (++seen === count) resolve();
      });
      return {
        done,
        async close() {
          await stream.close();
          await consumer.close();
        },
      };
    },
    async close() {
      await producer.close();
      if (created.length > 0) {
        await admin.deleteTopics({ topics: created.map((t) => t.topic) }).catch(() => undefined);
        await admin.deleteGroups({ groups: created.map((t) => t.group) }).catch(() => undefined);
      }
      await admin.close();
    },
  };
}
