import { randomUUID } from 'node:crypto';
import type { Admin, Consumer, Kafka, Message, Producer } from 'kafkajs';
import type { RequestReplySide, Target } from './lib/types.js';
import { REPLY_BYTES, REQUEST_TIMEOUT_MS, uniqueGroup, uniqueTopic } from './lib/util.js';

const PARTITIONS = 3;
/** The header names Spring's ReplyingKafkaTemplate uses (busbar's Kafka driver uses them too). */
const REPLY_TOPIC = 'kafka_replyTopic';
const CORRELATION_ID = 'kafka_correlationId';
/** As busbar's Kafka driver: a fetch waits at most this long for data. */
const MAX_WAIT_MS = 500;

/** Resolves when the consumer has joined its group (its partitions are assigned). */
function joined(consumer: Consumer): Promise<void> {
  return new Promise<void>((resolve) => consumer.on(consumer.events.GROUP_JOIN, () => resolve()));
}

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
  const waiting = new Map<string, (reply: Buffer | Error) => void>();
  const created: Target[] = [];
  const queued = new Map<string, Message[]>();
  let flushing = false;
  const replyGroup = uniqueGroup();
  let replies: Promise<Consumer> | undefined;
  let seq = 0;

  const openReplies = async (): Promise<Consumer> => {
    await admin.createTopics({ topics: [{ topic: replyTopic, numPartitions: 1 }], waitForLeaders: true });
    const consumer = kafka.consumer({ groupId: replyGroup, maxWaitTimeInMs: MAX_WAIT_MS });
    const ready = joined(consumer);
    await consumer.connect();
    await consumer.subscribe({ topic: replyTopic, fromBeginning: true });
    await consumer.run({
      autoCommit: false,
      eachBatch: async ({ batch }) => {
        for (const m of batch.messages) {
          const id = m.headers?.[CORRELATION_ID]?.toString();
          if (id !== undefined && m.value) waiting.get(id)?.(m.value);
        }
      },
    });
    await ready;
    return consumer;
  };

  const flush = () => {
    flushing = false;
    for (const [topic, messages] of queued) {
      queued.delete(topic);
      producer.send({ topic, acks: -1, messages }).catch((error: unknown) => {
        for (const m of messages) waiting.get(String(m.headers?.[CORRELATION_ID]))?.(error as Error);
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
      const consumer = kafka.consumer({ groupId: target.group, maxWaitTimeInMs: MAX_WAIT_MS });
      const ready = joined(consumer);
      await consumer.connect();
      await consumer.subscribe({ topic: target.topic, fromBeginning: true });
      await consumer.run({
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
      await ready;
      return { close: () => consumer.disconnect() };
    },
    async request(target, payload) {
      replies ??= openReplies();
      await replies;
      const id = (seq++).toString(36);
      return new Promise<unknown>((resolve, reject) => {
        const timer = setTimeout(() => {
          waiting.delete(id);
          reject(new Error(`no reply within ${REQUEST_TIMEOUT_MS} ms`));
        }, REQUEST_TIMEOUT_MS);
        waiting.set(id, (reply) => {
          waiting.delete(id);
          clearTimeout(timer);
          if (reply instanceof Error) reject(reply);
          else resolve(JSON.parse(reply.toString()));
        });
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
