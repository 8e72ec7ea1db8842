import { execFileSync } from 'node:child_process';
import { connect, silentLogger } from '@busbar/core';
import { brokerAvailable, brokerUrls, uniqueName, waitFor } from '@busbar/testing';
import { describe, expect, it } from 'vitest';
import { driver } from '../src/index.js';
import { kcatAvailable } from './foreign-members.js';

const ok = (await brokerAvailable('kafka')) && kcatAvailable();

/** Records written by librdkafka (kcat) with a codec kafkajs ships no decoder for, as a Java or Go producer may. */
describe.runIf(ok || process.env.CI === 'true')('kafka: batches compressed with a codec that is not registered', () => {
  it('stop the subscription with an UnsupportedError naming the codec, in health and onError, not a raw crash', async () => {
    const errors: string[] = [];
    const bus = await connect({
      url: brokerUrls.kafka,
      driver,
      maxWaitTimeMs: 100,
      logger: { ...silentLogger, error: (_m: string, x?: { error?: unknown }) => void errors.push(String(x?.error)) },
    });
    const topic = uniqueName('snappy');
    let handled = 0;
    await bus.subscribe(topic, () => void handled++, { group: uniqueName('g') });
    const broker = new URL(brokerUrls.kafka).host;
    // librdkafka sends a batch uncompressed when compressing does not make it smaller: give it something to gain.
    const lines = Array.from({ length: 20 }, (_, n) => JSON.stringify({ n, text: 'x'.repeat(200) })).join('\n');
    execFileSync('kcat', ['-P', '-b', broker, '-t', topic, '-p', '0', '-z', 'snappy', '-X', 'linger.ms=200'], {
      input: `${lines}\n`,
    });
    const consumerDown = async () =>
      (await bus.health()).connections.find((c) => c.state === 'down' && c.error?.includes('snappy'));
    await waitFor(async () => (await consumerDown()) !== undefined, 30_000, 'the consumer down, naming snappy');
    expect((await consumerDown())?.error).toContain('register');
    expect(errors.some((e) => e.startsWith('UnsupportedError'))).toBe(true);
    expect(handled).toBe(0);
    await bus.close();
  }, 60_000);
});
