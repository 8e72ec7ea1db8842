import { spawn } from 'node:child_process';
import { type Bus, connect, deadLetterTopic, type Message, silentLogger } from '@busbar/core';
import { brokerAvailable, brokerUrls, uniqueName, waitFor } from '@busbar/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BIN, run, start, watch } from './cli.js';
import { describeCli, makeDeadLetters } from './suite.js';

const ok = await brokerAvailable('redis');

interface ListJson {
  readonly count: number;
  readonly more: boolean;
  readonly messages: readonly unknown[];
}

describeCli(
  {
    name: 'redis',
    url: brokerUrls.redis,
    idleMs: 500,
    topology: (t, g) => [`busbar:{${t}}`, `busbar:{${t}}:retry:${g}`, `busbar:{${t}.${g}.dlq}`],
  },
  ok,
);

/** Runs the CLI on a pseudo-terminal (util-linux `script`), as an operator at a shell does. */
function onTerminal(args: readonly string[], input: string): Promise<{ code: number | null; output: string }> {
  const command = [process.execPath, BIN, ...args].map((a) => `'${a.replaceAll("'", "'\\''")}'`).join(' ');
  const child = spawn('script', ['-qec', command, '/dev/null'], { stdio: ['pipe', 'pipe', 'pipe'] });
  let output = '';
  child.stdout.on('data', (chunk: Buffer) => {
    output += chunk.toString();
  });
  // Answer once the prompt is up (typed earlier, the terminal would echo it before the question).
  const answer = setInterval(() => {
    if (output.includes('[y/N]')) {
      child.stdin.write(input);
      clearInterval(answer);
    }
  }, 50);
  const timer = setTimeout(() => child.kill('SIGKILL'), 25_000);
  return new Promise((resolve) => {
    child.on('close', (code) => {
      clearInterval(answer);
      clearTimeout(timer);
      resolve({ code, output });
    });
  });
}

const hasScript = await new Promise<boolean>((resolve) => {
  const probe = spawn('script', ['--version'], { stdio: 'ignore' });
  probe.on('error', () => resolve(false));
  probe.on('close', (code) => resolve(code === 0));
});

describe.runIf(ok)('busbar CLI on redis: interruption, terminal prompt and progress', () => {
  const url = ['--url', brokerUrls.redis, '--quiet'];
  let bus: Bus;
  beforeAll(async () => {
    bus = await connect({ url: brokerUrls.redis, logger: silentLogger });
  });
  afterAll(async () => {
    await bus?.close();
  });

  it('an interrupted redrive exits 130 and loses nothing: every dead letter is either moved or still dead', async () => {
    const topic = uniqueName('cli-int');
    await makeDeadLetters(bus, topic, 'g', 10, 0);
    const received = new Set<string>();
    const sub = await bus.subscribe(topic, (m: Message<unknown>) => void received.add(m.id), { group: 'healthy' });
    try {
      const child = start(['dlq', 'redrive', topic, ...url, '-g', 'g', '--rate', '3', '--json']);
      const redrive = watch(child);
      await new Promise((resolve) => setTimeout(resolve, 2_500));
      child.kill('SIGINT');
      expect(await redrive.exit).toBe(130);
      const report = JSON.parse(redrive.output().stdout) as { moved: number; interrupted: boolean };
      expect(report.interrupted).toBe(true);
      expect(report.moved).toBeGreaterThan(0);
      expect(report.moved).toBeLessThan(10);
      const left = await run(['dlq', 'list', topic, ...url, '-g', 'g', '--idle', '500', '--json']);
      const dead = (JSON.parse(left.stdout) as { messages: { id: string }[] }).messages.map((m) => m.id);
      const deadline = Date.now() + 10_000;
      while (received.size < report.moved && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
      expect(received.size).toBe(report.moved);
      expect(dead.length + received.size).toBe(10);
      for (const id of dead) expect(received.has(id)).toBe(false);
    } finally {
      await sub.close();
    }
  });

  it('dlq list stops at 10,000 and says there are more, instead of a count that is silently too low', async () => {
    // A peek on Redis handed over every dead letter its --limit allowed, RabbitMQ stops at 10,000 (its prefetch):
    // the same queue listed 10050 on one and 10000 on the other, both without a word.
    const topic = uniqueName('cli-many');
    const list = (...extra: string[]) => run(['dlq', 'list', topic, ...url, '-g', 'g', '--idle', '500', ...extra]);
    expect((await list('--json')).code).toBe(0); // creates the dead-letter reader group
    const total = 10_050;
    for (let i = 0; i < total; i += 1_000) {
      const batch = Array.from({ length: Math.min(1_000, total - i) }, (_, j) => ({ payload: { n: i + j } }));
      await bus.publishBatch(deadLetterTopic(topic, 'g'), batch);
    }
    const json = JSON.parse((await list('--json', '--limit', '20000')).stdout) as ListJson;
    expect([json.count, json.more, json.messages.length]).toEqual([10_000, true, 10_000]);
    const table = await list();
    expect(table.stdout).toMatch(/^count +10000\+ \(a listing stops at 10000: narrow it with filters\)$/m);
    const few = JSON.parse((await list('--json', '--limit', '5')).stdout) as ListJson;
    expect([few.count, few.more]).toEqual([5, false]);
    // A purge acks as it goes: it reaches all of them, and the bus still lists the (now empty) queue.
    const purged = await run(['dlq', 'purge', topic, ...url, '-g', 'g', '--idle', '500', '--yes', '--json']);
    expect(JSON.parse(purged.stdout)).toMatchObject({ purged: total });
    const empty = JSON.parse((await list('--json')).stdout) as ListJson;
    expect([empty.count, empty.more]).toEqual([0, false]);
  }, 90_000);

  it('tail --group --count --json prints one JSON line per message and exits by itself', async () => {
    const topic = uniqueName('cli-tail');
    const child = start(['tail', topic, ...url, '--group', 'watchers', '--count', '2', '--json']);
    const tail = watch(child);
    await tail.until((o) => o.stderr.includes('tailing'));
    await bus.publish(topic, { n: 1 }, { key: 'k1' });
    await bus.publish(topic, { n: 2 });
    await bus.publish(topic, { n: 3 });
    expect(await tail.exit).toBe(0);
    const lines = tail
      .output()
      .stdout.trim()
      .split('\n')
      .map((line) => JSON.parse(line) as Record<string, unknown>);
    expect(lines).toMatchObject([
      { topic, key: 'k1', payload: { n: 1 } },
      { topic, key: null, payload: { n: 2 } },
    ]);
    // What it did not print it did not take: the third is still the group's (it was acked, and lost, before).
    const later: unknown[] = [];
    const sub = await bus.subscribe(topic, (m) => void later.push(m.payload), { group: 'watchers' });
    try {
      await waitFor(() => later.length >= 1, 15_000, 'the third message for the group');
      expect(later).toEqual([{ n: 3 }]);
    } finally {
      await sub.close();
    }
  });

  it.runIf(hasScript)('purge asks on a terminal: no keeps everything, yes deletes', async () => {
    const topic = uniqueName('cli-ask');
    await makeDeadLetters(bus, topic, 'g', 2, 0);
    const args = ['dlq', 'purge', topic, ...url, '-g', 'g', '--idle', '500'];
    const no = await onTerminal(args, 'n\r');
    expect(no.output).toContain('Delete 2 dead letters? [y/N]');
    expect(no.code).toBe(1);
    expect(no.output).toContain('nothing deleted');
    const yes = await onTerminal(args, 'y\r');
    expect(yes.code).toBe(0);
    expect(yes.output).toContain('Deleted 2 dead letter(s)');
  });

  it.runIf(hasScript)('redrive draws a progress bar on a terminal, and never in --json mode', async () => {
    const topic = uniqueName('cli-bar');
    await makeDeadLetters(bus, topic, 'g', 4, 0);
    const bar = await onTerminal(['dlq', 'redrive', topic, ...url, '-g', 'g', '--idle', '500', '--dry-run'], '');
    expect(bar.output).not.toContain('[####');
    const moved = await onTerminal(['dlq', 'redrive', topic, ...url, '-g', 'g', '--idle', '500'], '');
    expect(moved.code).toBe(0);
    expect(moved.output).toContain('\rre-driving [####################] 4/4');
    expect(moved.output).toContain('Re-drove 4 dead letter(s)');
    // Another group: group g would get the 4 re-driven messages again and dead-letter them once more.
    await makeDeadLetters(bus, topic, 'g2', 1, 0);
    const json = await onTerminal(['dlq', 'redrive', topic, ...url, '-g', 'g2', '--idle', '500', '--json'], '');
    expect(json.output).not.toContain('re-driving');
    expect(JSON.parse(json.output.trim())).toMatchObject({ moved: 1 });
  });
});

describe.runIf(ok)('busbar cli on hostile output (Redis)', () => {
  let bus: Bus;
  const url = ['--url', brokerUrls.redis];
  beforeAll(async () => {
    bus = await connect({
      url: brokerUrls.redis,
      driver: (await import('@busbar/redis')).driver,
      logger: silentLogger,
    });
  });
  afterAll(async () => {
    await bus?.close();
  });

  it('dlq show escapes a key and error text that carry terminal escapes', async () => {
    const topic = uniqueName('cli-esc');
    let failed = false;
    const sub = await bus.subscribe(
      topic,
      () => {
        failed = true;
        throw new Error('boom \u001b]0;PWNED\u0007');
      },
      { group: 'g', retry: false },
    );
    const id = await bus.publish(topic, 1, { key: 'k\u001b[2J\r' });
    await waitFor(() => failed, 10_000, 'the dead letter');
    await sub.close();
    const shown = await run(['dlq', 'show', topic, ...url, '-g', 'g', '--id', id, '--idle', '500']);
    expect(shown.code).toBe(0);
    for (const raw of ['\u001b', '\u0007', '\r']) expect(shown.stdout.includes(raw)).toBe(false);
    expect(shown.stdout).toContain('\\u001b');
  });

  it('a closed pipe (| head) ends the command quietly, no stack trace', async () => {
    const topic = uniqueName('cli-pipe');
    const child = spawn(process.execPath, [BIN, 'tail', topic, ...url, '--json'], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stderr = '';
    child.stderr.on('data', (chunk) => {
      stderr += String(chunk);
    });
    await waitFor(() => stderr.includes('tailing'), 10_000, 'tailing');
    child.stdout.destroy();
    for (let n = 0; n < 5; n++) await bus.publish(topic, { n });
    const code = await new Promise<number | null>((resolve) => child.once('exit', resolve));
    expect(stderr).not.toContain('EPIPE');
    expect(stderr).not.toContain('Unhandled');
    expect(code).toBe(0);
  });
});
