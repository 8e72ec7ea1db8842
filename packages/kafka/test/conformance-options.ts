import { connect, silentLogger } from '@busbar/core';
import {
  brokerUrls,
  CANARY,
  CONFORMANCE_SECTIONS,
  type ConformanceOptions,
  type ConformanceSection,
} from '@busbar/testing';
import { driver } from '../src/index.js';
import { patchedKafka, setMaxMessageBytes } from './native-client.js';

/**
 * The Kafka conformance suite runs in two files, each a part of the sections, so that vitest runs the halves
 * side by side: in one file it was the longest of the whole run (210 s on the 2-core CI machine, Kafka's
 * group joins), and the file every other one waited for. The second part is every section the first does
 * not name, so a section added to the suite runs without anyone listing it here.
 */
export const FIRST_PART: ConformanceSection[] = [
  'capabilities',
  'delivery',
  'ordering',
  'failures',
  'lifecycle',
  'durable groups',
  'credentials',
];
export const SECOND_PART = CONFORMANCE_SECTIONS.filter((s) => !FIRST_PART.includes(s));

const kafka = patchedKafka(['127.0.0.1:9092']);

/** setMaxMessageBytes on an admin of its own (the suite keeps no connection between cases). */
async function maxMessageBytes(topic: string, value: string, create: boolean): Promise<void> {
  const admin = kafka.admin();
  await admin.connect();
  try {
    await setMaxMessageBytes(admin, topic, value, create);
  } finally {
    await admin.disconnect();
  }
}

export function kafkaConformance(sections: ConformanceSection[]): ConformanceOptions {
  return {
    connect: (overrides) => connect({ url: brokerUrls.kafka, driver, logger: silentLogger, ...overrides }),
    capabilities: {
      durableGroups: true,
      ordering: true,
      wildcards: false,
      requestReply: true,
    },
    timeoutScale: 2,
    // subscribe() resolves once the group has joined and its start offsets are fixed: no settling needed.
    settleMs: 0,
    // No SASL on the test broker: a closed port, with the canary as password.
    badCredentialsUrl: `kafka://busbar:${CANARY}@127.0.0.1:1`,
    // No proxyableUrl (the broker's metadata sends clients to the advertised address): the wrong-peer cases need this.
    wrongPeerUrl: (host, port) => `kafka://${host}:${port}`,
    // A topic whose records may be at most 64 bytes: every write is refused with MESSAGE_TOO_LARGE (busbar's
    // PayloadTooLargeError); restored to the broker default (1,048,588).
    refuseWrites: async (topic) => {
      await maxMessageBytes(topic, '64', true);
      return () => maxMessageBytes(topic, '1048588', false);
    },
    sections,
  };
}
