import { uniqueName, waitFor } from '@busbar/testing';
import kafkajs, { type Admin, type Kafka as KafkaClient, type KafkaMessage } from 'kafkajs';
import { installKafkajsPatch, Kafka, logLevel } from '../src/internals.js';
import { SocketRegistry } from '../src/sockets.js';

/** A plain kafkajs client: the foreign side of the interop tests. */
export const nativeKafka = new Kafka({ brokers: ['127.0.0.1:9092'], logLevel: logLevel.NOTHING });

/**
 * A kafkajs client for a suite's own admin work, through busbar's socket factory: plain kafkajs 2.2.4 arms a
 * negative timer on every idle connection (Node 24 prints TimeoutNegativeWarning; internals.ts), and the
 * conformance suite fails a case during which one is armed, so its helpers get the fix busbar's clients have.
 */
export function patchedKafka(brokers: string[]): KafkaClient {
  installKafkajsPatch();
  return new Kafka({ brokers, logLevel: logLevel.NOTHING, socketFactory: new SocketRegistry().factory });
}

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

/**
 * Sets a topic's max.message.bytes on a connected admin, creating the topic with it if it does not exist yet:
 * at 64 every write is refused (MESSAGE_TOO_LARGE), the conformance suite's `refuseWrites`; the broker default is
 * 1,048,588.
 */
export async function setMaxMessageBytes(admin: Admin, topic: string, value: string, create: boolean): Promise<void> {
  const configEntries = [{ name: 'max.message.bytes', value }];
  const created =
    create &&
    (await admin.createTopics({ waitForLeaders: true, topics: [{ topic, numPartitions: 1, configEntries }] }));
  if (!created) {
    await admin.alterConfigs({
      validateOnly: false,
      resources: [{ type: kafkajs.ConfigResourceTypes.TOPIC, name: topic, configEntries }],
    });
  }
}
