import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { promisify } from 'node:util';
import { type BrokerName, brokerAvailable, brokerUrls } from '@busbar/testing';
import { describe, expect, it } from 'vitest';

// The examples run as users run them: built JavaScript importing the package names.
// `npm test` builds first (tsc -b), so dist/ is current.
const run = promisify(execFile);
const demo = 'examples/dist/order-processing/main.js';

async function runDemo(url: string): Promise<string> {
  const { stdout } = await run(process.execPath, [demo], {
    env: { ...process.env, BUSBAR_URL: url },
    timeout: 90_000,
  });
  return stdout;
}

function expectFlow(stdout: string): void {
  expect(stdout).toContain('done: 3 charged, 1 dead-lettered, 1 retried, charged twice: no');
  expect(stdout).toMatch(/refused before sending: .*total/);
  expect(stdout).toMatch(
    /dead letter \S+-4: PermanentError "currency XTS is not supported" after 1 attempt\(s\), tenant=acme/,
  );
}

const brokers: BrokerName[] = ['rabbitmq', 'kafka', 'nats', 'redis', 'mqtt'];
const available = Object.fromEntries(
  await Promise.all(brokers.map(async (b) => [b, await brokerAvailable(b)] as const)),
);

describe('examples/order-processing', () => {
  it('is built', () => {
    expect(existsSync(demo)).toBe(true);
  });

  it('runs on memory://', async () => {
    expectFlow(await runDemo('memory://'));
  });

  for (const broker of brokers) {
    it.runIf(available[broker])(
      `runs on ${broker}`,
      async () => {
        expectFlow(await runDemo(brokerUrls[broker]));
      },
      120_000,
    );
  }
});
