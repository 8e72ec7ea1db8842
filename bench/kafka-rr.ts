import { randomUUID } from 'node:crypto';
import type { Admin, Consumer, Kafka, Message, Producer } from 'kafkajs-stock';
import { groupConsumer, PARTITIONS } from './kafka-shared.js';
import { PendingReplies } from './lib/replies.js';
import type { RequestReplySide, Target } from './lib/types.js';
import { REPLY_BYTES, uniqueGroup, uniqueTopic } from './lib/util.js';

/** The header names Spring's ReplyingKafkaTemplate uses (busbar's Kafka driver uses them too). */
const REPLY_TOPIC = 'kafka_replyTopic';
const CORRELATION_ID = 'kafka_correlationId';

/**
 * Raw kafkajs request/reply as Spring's ReplyingKafkaTemplate does it: a request topic, one reply topic per
 * requesting client (one partition, read by a consumer of a group of its own from its start: the topic is new),
 * the reply topic and a correlation id in headers. kafkajs has no linger, so requests made in the same turn of
 * the event loop go out as one send (PERFORMANCE.md pitfall 3), and a responder answers a fetched batch with
 * one send; acks=all both ways. Each request has a timeout.
 */
export function rawKafkaRequestReply(
  kafka: Kafka,
  producer: Producer,
  admin: Admin,
): RequestReplySide & { close(): Promise<void> } {
  const replyTopic = `rawbench.replies.${randomUUID()}`;
  const pending = new PendingReplies();
  const created: Target[] = [];
  const queued = new Map<string, Message[]>();
  let flushing = false;
  const replyGroup = uniqueGroup();
  let replies: Promise<Consumer> | undefined;

  const openReplies = async (): Promise<Consumer> => {
    await admin.createTopics({ topics: [{ topic: replyTopic, numPartitions: 1 }], waitForLeaders: true });
    return groupConsumer(kafka, replyGroup, replyTopic, {
      autoCommit: false,
      eachBatch: async ({ batch }) => {
        for (const m of batch.messages) {
          const id = m.headers?.[CORRELATION_ID]?.toString();
          if (id !== undefined && m.value) pending.settle(id, m.value);
        }
      },
    });
  };

  const flush = () => {
    flushing = false;
    for (const [topic, messages] of queued) {
      queued.delete(topic);
      producer.send({ topic, acks: -1, messages }).catch((error: unknown) => {
        const failed = error instanceof Error ? error : new Error(String(error));
        for (const m of messages) pending.settle(String(m.headers?.[CORRELATION_ID]), failed);
      });
    }
  };

  return {
    fresh: async () => ({ topic: uniqueTopic(), group: uniqueGroup() }),
    // Deleted at close: kafkajs keeps every topic it sent to in its metadata set, and a deleted one fails later sends.
    async drop(target) {
      created.push(target);
    },
    async serve(target) {
      await admin.createTopics({ topics: [{ topic: target.topic, numPartitions: PARTITIONS }], waitForLeaders: true });
      const consumer = await groupConsumer(kafka, target.group, target.topic, {
        autoCommit: true,
        autoCommitInterval: 100,
        partitionsConsumedConcurrently: PARTITIONS,
        eachBatch: async ({ batch }) => {
          const out = new Map<string, Message[]>();
          for (const m of batch.messages) {
            const to = m.headers?.[REPLY_TOPIC]?.toString();
            const id = m.headers?.[CORRELATION_ID];
            if (to === undefined || id === undefined) continue;
            const list = out.get(to) ?? [];
            if (list.length === 0) out.set(to, list);
            list.push({ value: REPLY_BYTES, headers: { [CORRELATION_ID]: id } });
          }
          // Not awaited: the next fetch need not wait for the replies' acks (requests are not retried anyway).
          for (const [topic, messages] of out) void producer.send({ topic, acks: -1, messages }).catch(() => undefined);
        },
      });
      return { close: () => consumer.disconnect() };
    },
    async request(target, payload) {
      replies ??= openReplies();
      await replies;
      return pending.request((id) => {
        const list = queued.get(target.topic) ?? [];
        if (list.length === 0) queued.set(target.topic, list);
        list.push({ value: payload, headers: { [REPLY_TOPIC]: replyTopic, [CORRELATION_ID]: id } });
        if (!flushing) {
          flushing = true;
          setImmediate(flush);
        }
      });
    },
    async close() {
      const consumer = await replies?.catch(() => undefined);
      await consumer?.disconnect();
      const topics = [...created.map((t) => t.topic), ...(replies ? [replyTopic] : [])];
      if (topics.length > 0) await admin.deleteTopics({ topics, timeout: 30_000 }).catch(() => undefined);
      const groups = [...created.map((t) => t.group), ...(replies ? [replyGroup] : [])];
      await admin.deleteGroups(groups).catch(() => undefined);
    },
  };
}
