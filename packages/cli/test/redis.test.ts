import { spawn } from 'node:child_process';
import { type Bus, connect, type Message, silentLogger } from '@busbar/core';
import { brokerAvailable, brokerUrls, uniqueName } from '@busbar/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BIN, run, start, watch } from './cli.js';
import { describeCli, makeDeadLetters } from './suite.js';

const ok = await brokerAvailable('redis');

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
