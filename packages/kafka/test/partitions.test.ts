import type { OutgoingRecord } from '@busbar/core/transport';
import type { ICustomPartitioner, Kafka, Message, RecordMetadata, TopicMessages } from 'kafkajs';
import { describe, expect, it } from 'vitest';
import { Publisher } from '../src/publisher.js';

const META = [0, 1, 2].map((partitionId) => ({
  partitionErrorCode: 0,
  partitionId,
  leader: partitionId + 1,
  replicas: [],
  isr: [],
  offlineReplicas: [],
}));

/**
 * A kafkajs stand-in whose first send does what kafkajs 2.2.4 does after a leader move (partitions.ts): it
 * skips the records of one partition and resolves with the other partitions' results only.
 */
function fakeKafka() {
  const written: { partition: number; id: string }[] = [];
  let sends = 0;
  let producers = 0;
  const kafka = {
    producer: (options: { createPartitioner: ICustomPartitioner }) => {
      producers++;
      const partitioner = options.createPartitioner();
      return {
        events: { DISCONNECT: 'producer.disconnect' },
        on: () => () => undefined,
        connect: async () => undefined,
        disconnect: async () => undefined,
        sendBatch: async ({ topicMessages }: { topicMessages: TopicMessages[] }): Promise<RecordMetadata[]> => {
          sends++;
          const results = new Map<string, RecordMetadata>();
          for (const { topic, messages } of topicMessages) {
            for (const message of messages as Message[]) {
              const partition = partitioner({ topic, partitionMetadata: META, message });
              if (sends === 1 && partition === 0) continue;
              written.push({ partition, id: String(message.headers?.['busbar-id']) });
              results.set(`${topic}:${partition}`, { topicName: topic, partition, errorCode: 0 });
            }
          }
          return [...results.values()];
        },
      };
    },
  } as unknown as Kafka;
  return { kafka, written, sends: () => sends, producers: () => producers };
}

const record = (n: number, key: string | undefined): OutgoingRecord => ({
  topic: 't',
  id: `id-${n}`,
  key,
  headers: {},
  body: new TextEncoder().encode(String(n)),
  contentType: 'text/plain',
  timestamp: Date.now(),
});

describe('kafka publisher: a send that kafkajs resolved without writing every partition', () => {
  it('sends the skipped records again with a fresh producer before confirming them; nothing confirmed is missing', async () => {
    const fake = fakeKafka();
    const publisher = new Publisher({
      kafka: fake.kafka,
      compression: 0,
      maxBatchBytes: 1_000_000,
      maxMessageBytes: 1_000_000,
      timeoutMs: 5_000,
      secrets: [],
      ensureTopics: async () => undefined,
      listTopics: async () => [],
      onState: () => undefined,
    });
    // Keyed and keyless records: keyless ones are placed by their id, the same on every attempt.
    const records = Array.from({ length: 40 }, (_, n) => record(n, n % 2 === 0 ? `k${n}` : undefined));
    await Promise.all(records.map((r) => publisher.publish([r])));
    const ids = new Set(fake.written.map((w) => w.id));
    for (const r of records) expect(ids.has(r.id), r.id).toBe(true);
    expect(fake.sends()).toBeGreaterThanOrEqual(2);
    // The skipped publishes went out on a new producer (kafkajs' sequence state is not trusted again).
    expect(fake.producers()).toBeGreaterThanOrEqual(2);
    // Every record stays in its partition on the second attempt: partition 0 got records only then.
    expect(fake.written.filter((w) => w.partition === 0).length).toBeGreaterThan(0);
    await publisher.close();
  });
});
