import { uniqueName, waitFor } from '@busbar/testing';
import type { KafkaMessage } from 'kafkajs';
import { Kafka, logLevel } from '../src/internals.js';

/** A plain kafkajs client: the foreign side of the interop tests. */
export const nativeKafka = new Kafka({ brokers: ['127.0.0.1:9092'], logLevel: logLevel.NOTHING });

/** Reads the first `count` records of `topic` (waiting for it to exist) with a plain kafkajs consumer. */
export async function readRecords(topic: string, count: number, timeoutMs = 20_000): Promise<KafkaMessage[]> {
  const admin = nativeKafka.admin();
  await admin.connect();
  try {
    await waitFor(async () => (await admin.listTopics()).includes(topic), timeoutMs, `topic ${topic}`);
  } finally {
    await admin.disconnect();
  }
  const consumer = nativeKafka.consumer({ groupId: uniqueName('native'), maxWaitTimeInMs: 200 });
  const records: KafkaMessage[] = [];
  await consumer.connect();
  try {
    await consumer.subscribe({ topics: [topic], fromBeginning: true });
    await consumer.run({
      eachMessage: async ({ message }) => {
        records.push(message);
      },
    });
    await waitFor(() => records.length >= count, timeoutMs, `${count} records on ${topic} (got ${records.length})`);
    return records;
  } finally {
    await consumer.disconnect();
  }
}

/** kafkajs headers as the strings a plain consumer would read (the CloudEvents SDK wants strings). */
export function stringHeaders(message: KafkaMessage): Record<string, string> {
  const headers: Record<string, string> = {};
  for (const [name, value] of Object.entries(message.headers ?? {})) {
    if (value !== undefined) headers[name] = Array.isArray(value) ? value.map(String).join(', ') : String(value);
  }
  return headers;
}
