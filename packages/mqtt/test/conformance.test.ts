import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { connect, silentLogger } from '@busbar/core';
import { CANARY, describeConformance, sleep } from '@busbar/testing';
import mqtt from 'mqtt';
import { afterAll, describe } from 'vitest';
import { driver } from '../src/index.js';
import { PrivateMosquitto, privateBrokerAvailable } from './helpers.js';

/**
 * The conformance suite runs on a private Mosquitto started once for this file: `refuseWrites` denies a
 * topic in its ACL file and reloads it (SIGHUP), which the shared broker must not be put through.
 */
const broker = new PrivateMosquitto();
const aclFile = join(broker.dir, 'acl');
const denied = new Set<string>();

function writeAcl(): void {
  writeFileSync(aclFile, ['topic readwrite #', ...[...denied].map((path) => `topic deny ${path}`), ''].join('\n'));
}

/** Publishes to `path` (QoS 1) until Mosquitto answers with PUBACK 0x87 (not authorized): the ACL is live. */
async function untilRefused(path: string): Promise<void> {
  const client = await mqtt.connectAsync(broker.url, { protocolVersion: 5, reconnectPeriod: 0 });
  try {
    for (let i = 0; i < 50; i++) {
      const refused = await client.publishAsync(path, 'probe', { qos: 1 }).then(
        () => false,
        (error: { code?: number }) => error.code === 0x87,
      );
      if (refused) return;
      await sleep(100);
    }
    throw new Error(`Mosquitto did not start refusing '${path}'`);
  } finally {
    await client.endAsync(true);
  }
}

const ok = privateBrokerAvailable();
if (ok) {
  writeAcl();
  await broker.start([`acl_file ${aclFile}`]);
}
afterAll(() => broker.destroy());

describe.runIf(ok)('mqtt', () => {
  describeConformance('mqtt', {
    connect: (overrides) => connect({ url: broker.url, driver, logger: silentLogger, ...overrides }),
    proxyableUrl: broker.url,
    wrongPeerUrl: (host, port) => `mqtt://${host}:${port}`,
    capabilities: {
      durableGroups: true,
      ordering: false,
      wildcards: true,
      requestReply: true,
    },
    // Mosquitto allows anonymous clients here: a closed port makes the connect fail.
    badCredentialsUrl: `mqtt://busbar:${CANARY}@127.0.0.1:1`,
    // A `topic deny` ACL entry: Mosquitto answers a QoS 1 PUBLISH there with PUBACK 0x87 (not authorized).
    refuseWrites: async (topic) => {
      const path = topic.replaceAll('.', '/');
      denied.add(path);
      writeAcl();
      broker.reload();
      await untilRefused(path);
      return async () => {
        denied.delete(path);
        writeAcl();
        broker.reload();
        // No probe here: a probe that got through would be a message on the dead-letter topic.
        await sleep(500);
      };
    },
  });
});
