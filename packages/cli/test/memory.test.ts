import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort } from '@busbar/testing';
import { beforeAll, describe, expect, it } from 'vitest';
import { assertBuilt, run, start } from './cli.js';

const MEMORY = 'memory://cli-test';
const ERROR_LINE = /^busbar: .+ \(BUSBAR_[A-Z_]+\)$/;

beforeAll(() => assertBuilt());

describe('busbar CLI on memory://', () => {
  // Concurrent: each case is its own process, and none of them reaches a broker.
  it.concurrent.each([
    [[], 'No command given'],
    [['frobnicate'], "Unknown command 'frobnicate'"],
    [['dlq'], "Unknown command 'dlq'"],
    [['health', '--bogus'], "Unknown option '--bogus'"],
    [['dlq', 'list'], "'dlq list' needs a topic"],
    [['dlq', 'list', 't', '--limit', 'ten'], '--limit must be a positive whole number'],
    [['dlq', 'list', 't', '--limit', '0'], '--limit must be a positive whole number'],
    [['dlq', 'list', 't', '--older-than', 'yesterday'], '--older-than must be a duration'],
    [['dlq', 'redrive', 't', '--rate=-1'], '--rate must be a number above 0.001'],
    // Past Node's longest timer a wait fires at once: a rate limit or timeout would silently not apply.
    [['dlq', 'redrive', 't', '--rate', '0.0000001'], '--rate must be a number above 0.001'],
    [['health', '--timeout', '2147483648'], '--timeout must be at most 2147483647'],
    [['dlq', 'list', 't', '--idle', '99999999999'], '--idle must be at most 2147483647'],
    [['dlq', 'list', 't', '--rate', '5'], "--rate does not apply to 'dlq list'"],
    [['dlq', 'purge', 't'], 'pass --yes'],
    [['publish'], "'publish' needs a topic"],
    [['publish', 't', '{"a":1}', 'extra'], 'one payload'],
    [['publish', 't', 'not json'], 'is not JSON'],
    [['publish', 't', '@/nonexistent/payload.json'], 'Cannot read /nonexistent/payload.json (ENOENT)'],
    [['publish', 't', '{}', '--header', 'novalue'], '--header takes key=value'],
    [['tail', 't', '--count', '1.5'], '--count must be a positive whole number'],
  ])('%j is a usage error: exit 2, one typed line, no stack', async (args, message) => {
    const result = await run([...args, '--url', MEMORY]);
    expect(result.code).toBe(2);
    expect(result.stdout).toBe('');
    expect(result.stderr).toContain(message);
    expect(result.stderr.trim()).toMatch(ERROR_LINE);
    expect(result.stderr).not.toMatch(/\n\s+at /);
  });

  it('without --url or BUSBAR_URL it says how to give one (exit 2); BUSBAR_URL works', async () => {
    const missing = await run(['health']);
    expect(missing.code).toBe(2);
    expect(missing.stderr).toContain('pass --url or set BUSBAR_URL');
    const fromEnv = await run(['health', '--json'], { env: { BUSBAR_URL: MEMORY } });
    expect(fromEnv.code).toBe(0);
    expect(JSON.parse(fromEnv.stdout)).toMatchObject({ ok: true, transport: 'memory', status: 'up' });
  });

  it('--help prints every command and exits 0', async () => {
    const result = await run(['--help']);
    expect(result.code).toBe(0);
    for (const command of [
      'dlq list',
      'dlq show',
      'dlq redrive',
      'dlq purge',
      'publish',
      'tail',
      'health',
      'topology',
    ]) {
      expect(result.stdout).toContain(`busbar ${command}`);
    }
  });

  it('health round-trips a probe and exits 0, as a table and as JSON', async () => {
    const table = await run(['health', '--url', MEMORY]);
    expect(table.code).toBe(0);
    expect(table.stdout).toMatch(/^ok {2}memory {2}up$/m);
    const json = await run(['health', '--url', MEMORY, '--json']);
    expect(json.code).toBe(0);
    const report = JSON.parse(json.stdout) as { ok: boolean; roundTripMs: number };
    expect(report.ok).toBe(true);
    expect(report.roundTripMs).toBeGreaterThanOrEqual(0);
  });

  it('publish takes JSON from the argument, a file and stdin, and prints the id', async () => {
    const arg = await run(['publish', 'orders.created', '{"n":1}', '--url', MEMORY, '--id', 'fixed-id', '--key', 'k']);
    expect(arg.code).toBe(0);
    expect(arg.stdout.trim()).toBe('fixed-id');
    const dir = await mkdtemp(join(tmpdir(), 'busbar-cli-'));
    const file = join(dir, 'payload.json');
    await writeFile(file, '{"n":2}');
    const fromFile = await run(['publish', 'orders.created', `@${file}`, '--url', MEMORY, '--json']);
    expect(fromFile.code).toBe(0);
    expect(JSON.parse(fromFile.stdout)).toMatchObject({ topic: 'orders.created', id: expect.any(String) });
    const fromStdin = await run(['publish', 'orders.created', '-', '--url', MEMORY, '-H', 'x=1'], { input: '[1,2]' });
    expect(fromStdin.code).toBe(0);
    expect(fromStdin.stdout.trim()).toMatch(/^[0-9a-f-]{36}$/);
  });

  it('an invalid topic is a typed error from core (exit 1), and the next publish works', async () => {
    const bad = await run(['publish', 'bad topic with spaces', '{}', '--url', MEMORY]);
    expect(bad.code).toBe(1);
    expect(bad.stderr.trim()).toMatch(/^busbar: .+ \(BUSBAR_INVALID_TOPIC\)$/);
    const good = await run(['publish', 'good.topic', '{}', '--url', MEMORY]);
    expect(good.code).toBe(0);
  });

  it('a bad URL or option is a typed usage error and never shows the password', async () => {
    for (const args of [
      ['--url', 'memory://admin:s3cr%21t@host', '-o', 'bogus=1'],
      ['--url', 'foo://admin:s3cr%21t@host'],
      ['--url', 'redis://admin:s3cr%21t@[nope'],
    ]) {
      const result = await run(['health', ...args]);
      expect(result.code).toBe(2);
      expect(result.stderr.trim()).toMatch(/^busbar: .+ \(BUSBAR_CONFIG\)$/);
      expect(result.stderr).not.toContain('s3cr');
    }
  });

  it('an unreachable broker fails health with a typed connection error (exit 1), password masked', async () => {
    const port = await freePort();
    const result = await run([
      'health',
      '--url',
      `redis://:s3cretpw@127.0.0.1:${port}`,
      '--connect-timeout',
      '1500',
      '--quiet',
    ]);
    expect(result.code).toBe(1);
    expect(result.stderr.trim()).toMatch(/^busbar: .+ \((BUSBAR_CONNECTION|BUSBAR_TIMEOUT)\)$/);
    expect(result.stderr).not.toContain('s3cretpw');
  });

  it('dlq commands on an empty dead-letter queue report zero', async () => {
    const list = await run(['dlq', 'list', 'orders', '--group', 'g', '--url', MEMORY, '--idle', '200', '--json']);
    expect(list.code).toBe(0);
    expect(JSON.parse(list.stdout)).toMatchObject({ count: 0, deadLetterTopic: 'orders.g.dlq', errors: [] });
    const show = await run(['dlq', 'show', 'orders', '-g', 'g', '--url', MEMORY, '--idle', '200']);
    expect(show.code).toBe(1);
    expect(show.stderr).toContain('no dead letter');
    const purge = await run(['dlq', 'purge', 'orders', '-g', 'g', '--yes', '--url', MEMORY, '--idle', '200']);
    expect(purge.code).toBe(0);
    expect(purge.stdout).toContain('Deleted 0 dead letter(s) from orders.g.dlq');
  });

  it('topology names the dead-letter topic and reader group', async () => {
    const result = await run(['topology', 'orders.created', '-g', 'billing', '--url', MEMORY, '--json']);
    expect(result.code).toBe(0);
    expect(JSON.parse(result.stdout)).toMatchObject({
      transport: 'memory',
      deadLetterTopic: 'orders.created.billing.dlq',
      deadLetterReaderGroup: 'busbar-dlq',
      capabilities: { durableGroups: expect.any(Boolean) },
    });
  });
});

describe('busbar cli: payload files', () => {
  it('a JSON file that starts with a byte-order mark is published', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'busbar-cli-bom-'));
    const file = join(dir, 'payload.json');
    await writeFile(file, '\uFEFF{"a":1}');
    const result = await run(['publish', 'bom.t', `@${file}`, '--url', MEMORY]);
    expect(result.stderr).toBe('');
    expect(result.code).toBe(0);
  });
});

describe('busbar cli: Ctrl-C', () => {
  it('the first SIGINT ends a dlq command that waits out a long --idle', async () => {
    const child = start(['dlq', 'list', 'orders', '-g', 'g', '--idle', '60000', '--url', MEMORY]);
    const exited = new Promise<number | null>((resolve) => child.once('exit', resolve));
    await new Promise((resolve) => setTimeout(resolve, 1_500));
    const sent = Date.now();
    child.kill('SIGINT');
    const code = await exited;
    // Only a second SIGINT ended it before, or the 60 s idle wait.
    expect(Date.now() - sent).toBeLessThan(10_000);
    expect(code).not.toBeNull();
  });
});

describe('busbar cli: usage errors', () => {
  it.each([
    [['dlq', 'list', 't', '--limit', 'abc'], '--limit must be a positive whole number'],
    [['dlq', 'redrive', 't', '--older-than', 'yesterday'], '--older-than must be a duration'],
    [['publish', 't', 'not json'], 'is not JSON'],
  ])('%j fails before connecting (exit 2 at once, even with an unreachable broker)', async (args, message) => {
    // Nothing listens on port 1: a connect would take the whole connect timeout.
    const result = await run([...args, '--url', 'redis://127.0.0.1:1', '--connect-timeout', '20000']);
    expect(result.code).toBe(2);
    expect(result.stderr).toContain(message);
    expect(result.stderr).not.toContain('BUSBAR_CONNECTION');
  });
});
