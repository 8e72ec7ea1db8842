import { brokerAvailable, brokerUrls } from '@busbar/testing';
import { describe, expect, it } from 'vitest';
import { run } from './cli.js';
import { describeCli } from './suite.js';

const ok = await brokerAvailable('rabbitmq');

describeCli(
  {
    name: 'rabbitmq',
    url: brokerUrls.rabbitmq,
    idleMs: 500,
    // As the driver's tests: the broker drops idle queues (no pile-up on the shared RabbitMQ), on an exchange of
    // their own (its retry and unroutable queues carry the same x-expires, which the default exchange's do not).
    options: { exchange: 'busbar-test', queueExpiresMs: 120_000 },
    topology: (t, g) => ['exchange', 'busbar-test', `${t}.${g}`, `${t}.${g}.dlq.busbar-dlq`],
  },
  ok,
);

describe.runIf(ok)('busbar CLI with a wrong RabbitMQ password', () => {
  it('fails with a typed connection error (exit 1) that never shows the password', async () => {
    const url = new URL(brokerUrls.rabbitmq);
    url.username = 'guest';
    url.password = 'Wr0ng-pa55word';
    const result = await run(['health', '--url', url.toString(), '--connect-timeout', '3000']);
    expect(result.code).toBe(1);
    expect(result.stderr).toMatch(/^busbar: .+ \(BUSBAR_CONNECTION\)$/m);
    expect(result.stderr).toContain('guest:***@');
    expect(result.stderr).not.toContain('Wr0ng-pa55word');
    expect(result.stdout).toBe('');
  });
});
