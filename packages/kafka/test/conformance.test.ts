import { connect, silentLogger } from '@busbar/core';
import { brokerAvailable, brokerUrls, CANARY, describeConformance } from '@busbar/testing';
import kafkajs from 'kafkajs';
import { describe } from 'vitest';
import { driver } from '../src/index.js';
import { patchedKafka } from './native-client.js';

const ok = await brokerAvailable('kafka');

const kafka = patchedKafka(['127.0.0.1:9092']);

/** Sets the topic's max.message.bytes (creating the topic with it if it does not exist yet). */
async function maxMessageBytes(topic: string, value: string, create: boolean): Promise<void> {
  const admin = kafka.admin();
  await admin.connect();
  try {
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
  } finally {
    await admin.disconnect();
  }
}

describe.runIf(ok)('kafka', () => {
  describeConformance('kafka', {
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
    // A topic whose records may be at most 64 bytes: every write is refused with MESSAGE_TOO_LARGE (busbar's
    // PayloadTooLargeError); restored to the broker default (1,048,588).
    refuseWrites: async (topic) => {
      await maxMessageBytes(topic, '64', true);
      return () => maxMessageBytes(topic, '1048588', false);
    },
  });
});
