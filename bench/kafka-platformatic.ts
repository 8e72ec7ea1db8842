import {
  Admin,
  Consumer,
  MessagesStreamFallbackModes,
  MessagesStreamModes,
  ProduceAcks,
  Producer,
} from '@platformatic/kafka';
import { kafkaPublishing, MAX_WAIT_MS, PARTITIONS } from './kafka-shared.js';
import type { Running, Side } from './lib/types.js';
import { Countdown } from './lib/util.js';

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
  // The same sends and topics as the kafkajs raw side.
  const publishing = kafkaPublishing({
    async createTopic(topic) {
      await admin.createTopics({ topics: [topic], partitions: PARTITIONS, replicas: 1 });
    },
    send: (topic, count, payload) =>
      producer.send({ messages: Array.from({ length: count }, () => ({ topic, value: payload })) }),
  });
  return {
    label: 'platformatic',
    ...publishing,
    async consume(target, count, onBody): Promise<Running> {
      const consumer = new Consumer({ ...base, groupId: target.group, maxWaitTime: MAX_WAIT_MS });
      const handled = new Countdown(count);
      const stream = await consumer.consume({
        topics: [target.topic],
        mode: MessagesStreamModes.COMMITTED,
        fallbackMode: MessagesStreamFallbackModes.EARLIEST,
        autocommit: 100,
      });
      stream.on('data', (message) => {
        onBody(message.value);
        handled.add();
      });
      return {
        done: handled.done,
        async close() {
          await stream.close();
          await consumer.close();
        },
      };
    },
    async close() {
      await producer.close();
      const created = publishing.created;
      if (created.length > 0) {
        await admin.deleteTopics({ topics: created.map((t) => t.topic) }).catch(() => undefined);
        await admin.deleteGroups({ groups: created.map((t) => t.group) }).catch(() => undefined);
      }
      await admin.close();
    },
  };
}
