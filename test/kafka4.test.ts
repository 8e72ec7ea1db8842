import { execFile } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { homedir, tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { connect, silentLogger } from '@busbar/core';
import { driver } from '@busbar/kafka';
import { type ConformanceOptions, describeConformance, freePort } from '@busbar/testing';
import type kafkajs from 'kafkajs';
import { afterAll, beforeAll, describe, vi } from 'vitest';
import { patchedKafka, setMaxMessageBytes } from '../packages/kafka/test/native-client.js';

/**
 * The Kafka conformance suite against Apache Kafka 4.x (KRaft only, old protocol versions removed by KIP-896),
 * on a private single-node broker started once for this file; the shared broker on 9092 stays 3.9.
 * Only the delivery, ordering, failures and bad-input sections run here (the version-sensitive paths: produce,
 * fetch, group join/commit, retries, dead letters, what the broker refuses); the full suite runs on the shared
 * 3.9 broker. The bad-input section records the "kafka on Kafka 4.4.0" column of docs/bad-input.md.
 * The jars come from Maven Central (`BUSBAR_KAFKA_VERSION=4.4.0 scripts/kafka/kafka.sh fetch`, done by .ci/run).
 * Outside CI the file is skipped when they have not been fetched; in CI it always runs (kafka.sh fetches them).
 */
const VERSION = process.env.BUSBAR_KAFKA4_VERSION ?? '4.4.0';
const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const SCRIPT = join(ROOT, 'scripts', 'kafka', 'kafka.sh');
const CACHE = process.env.BUSBAR_CACHE ?? join(homedir(), '.cache', 'busbar');
const CI = process.env.CI === 'true' || process.env.CI === '1';
const enabled = CI || existsSync(join(CACHE, `kafka-${VERSION}`, 'libs', '.complete'));

// A second JVM broker next to the shared one on a 2-CPU CI machine: the 50 x 100 load test needs more than 30 s.
vi.setConfig({ testTimeout: 60_000 });

const run = promisify(execFile);
const env = { ...process.env, BUSBAR_KAFKA_VERSION: VERSION };
const kafkaSh = (args: string[]) => run('bash', [SCRIPT, ...args], { env, timeout: 240_000 });

let port = 0;
let dir = '';
let admin: kafkajs.Admin | undefined;

function maxMessageBytes(topic: string, value: string, create: boolean): Promise<void> {
  if (!admin) throw new Error('the Kafka 4 broker is not up');
  return setMaxMessageBytes(admin, topic, value, create);
}

describe.runIf(enabled)(`Kafka ${VERSION}`, () => {
  beforeAll(async () => {
    port = await freePort();
    dir = mkdtempSync(join(tmpdir(), 'busbar-kafka4-'));
    const controllerPort = await freePort();
    await kafkaSh(['up', '--port', String(port), '--controller-port', String(controllerPort), '--dir', dir]);
    admin = patchedKafka([`127.0.0.1:${port}`]).admin();
    await admin.connect();
  }, 300_000);

  afterAll(async () => {
    await admin?.disconnect().catch(() => undefined);
    if (dir) {
      await kafkaSh(['down', '--dir', dir]).catch(() => undefined);
      rmSync(dir, { recursive: true, force: true });
    }
  }, 60_000);

  const options: ConformanceOptions = {
    connect: (overrides) => connect({ url: `kafka://127.0.0.1:${port}`, driver, logger: silentLogger, ...overrides }),
    capabilities: {
      durableGroups: true,
      ordering: true,
      wildcards: false,
    },
    timeoutScale: 2,
    settleMs: 0,
    // The whole suite on a second Kafka takes about 4 minutes on the CI machine, these sections about 2 (a third
    // of it the broker's start).
    sections: ['delivery', 'ordering', 'failures', 'bad input'],
    // As in packages/kafka/test/conformance-options.ts: a topic that takes records of at most 64 bytes.
    refuseWrites: async (topic) => {
      await maxMessageBytes(topic, '64', true);
      return () => maxMessageBytes(topic, '1048588', false);
    },
  };
  describeConformance(`kafka on Kafka ${VERSION}`, options);
});
