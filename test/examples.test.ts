import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { promisify } from 'node:util';
import { type BrokerName, brokerAvailable, brokerUrls } from '@busbar/testing';
import { describe, expect, it } from 'vitest';

// The examples run as users run them: built JavaScript importing the package names.
// `npm test` builds first (tsc -b), so examples/dist is current.
const run = promisify(execFile);

async function runExample(name: string, url: string): Promise<string> {
  const { stdout } = await run(process.execPath, [`examples/dist/${name}/main.js`], {
    env: { ...process.env, BUSBAR_URL: url, DATABASE_URL: brokerUrls.postgres },
    timeout: 100_000,
  });
  return stdout;
}

const brokers: BrokerName[] = ['rabbitmq', 'kafka', 'nats', 'redis', 'mqtt'];
const [available, postgres] = await Promise.all([
  Promise.all(brokers.map(async (b) => [b, await brokerAvailable(b)] as const)).then(Object.fromEntries),
  brokerAvailable('postgres'),
]);
const urls: [string, string, boolean][] = [
  ['memory', 'memory://', true],
  ...brokers.map((b): [string, string, boolean] => [b, brokerUrls[b], available[b] === true]),
];

describe('examples/order-processing', () => {
  it('is built', () => {
    expect(existsSync('examples/dist/order-processing/main.js')).toBe(true);
  });
  for (const [name, url, ok] of urls) {
    it.runIf(ok)(`runs on ${name}`, { timeout: 120_000 }, async () => {
      const out = await runExample('order-processing', url);
      expect(out).toContain('done: 3 charged, 1 dead-lettered, 1 retried, charged twice: no');
      expect(out).toMatch(/refused before sending: .*total/);
      expect(out).toMatch(
        /dead letter \S+-4: PermanentError "currency XTS is not supported" after 1 attempt\(s\), tenant=acme/,
      );
    });
  }
});

describe('examples/outbox (PostgreSQL outbox + idempotency store)', () => {
  for (const [name, url, ok] of urls) {
    it.runIf(ok && postgres)(`runs on ${name}`, { timeout: 120_000 }, async () => {
      const out = await runExample('outbox', url);
      expect(out).toContain('every committed order was charged exactly once');
      expect(out).toMatch(/outbox rows: 3 \(pending 0\), charges: 3,/);
    });
  }
});

describe('examples/middleware', () => {
  for (const [name, url, ok] of urls) {
    it.runIf(ok)(`runs on ${name}`, { timeout: 120_000 }, async () => {
      const out = await runExample('middleware', url);
      expect(out).toContain('billed: inv-1@acme, inv-2@globex');
      expect(out).toContain("dead-lettered: tenant 'mallory' is not allowed");
      expect(out).toContain('done: 2 billed, 1 refused, outcomes PermanentError ok ok');
      expect(out).toMatch(/"msg":"handled".*"tenant":"acme","correlationId":"[0-9a-f-]{36}"/);
    });
  }
});

describe('examples/observability', () => {
  it('traces the flow and serves metrics on memory://', { timeout: 60_000 }, async () => {
    const out = await runExample('observability', 'memory://');
    expect(out).toMatch(/done: 2 charged, 1 dead-lettered, \d+ spans in one trace/);
    expect(out).toContain('status="dead_letter"} 1');
    expect(out).toContain('GET /readyz -> 200');
  });
});
