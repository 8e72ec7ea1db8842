import { spawn } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { brokerAvailable, brokerUrls, uniqueName, waitFor } from '@busbar/testing';
import { describe, expect, it } from 'vitest';
import { open } from './helpers.js';

const ok = await brokerAvailable('rabbitmq');
const fixture = path.join(path.dirname(fileURLToPath(import.meta.url)), 'fixtures', 'held-consumer.mjs');

describe.runIf(ok)('rabbitmq consumer crash', () => {
  it('a consumer process killed mid-batch: its unacked messages are redelivered to the group', {
    timeout: 60_000,
  }, async () => {
    const topic = uniqueName('crash');
    const group = uniqueName('g');
    const queue = `${topic}.${group}`;
    const bus = await open();
    try {
      // Create the group's queue, then leave it to the other process.
      await (await bus.subscribe(topic, async () => undefined, { group })).close();
      const ids = await bus.publishBatch(
        topic,
        Array.from({ length: 100 }, (_, n) => ({ payload: n })),
      );

      const child = spawn(process.execPath, [fixture, brokerUrls.rabbitmq, queue, '20', '10'], {
        stdio: ['ignore', 'pipe', 'inherit'],
      });
      let out = '';
      child.stdout.on('data', (chunk) => {
        out += String(chunk);
      });
      const exited = new Promise((resolve) => child.once('exit', resolve));
      try {
        await waitFor(() => out.includes('holding 20'), 20_000, 'the child to hold 20 unacked messages');
      } finally {
        child.kill('SIGKILL');
        await exited;
      }

      const attempts = new Map<string, number>();
      await bus.subscribe(topic, async (m) => void attempts.set(m.id, m.attempt), { group, concurrency: 4 });
      await waitFor(() => attempts.size >= 90, 20_000, '90 messages');
      await new Promise((resolve) => setTimeout(resolve, 300));
      // The 10 acked before the crash are gone; the 20 held are back (attempt 2, from the quorum delivery count).
      expect([...attempts.keys()].sort()).toEqual(ids.slice(10).sort());
      const redelivered = ids.filter((id) => (attempts.get(id) ?? 0) >= 2);
      expect(redelivered).toEqual(ids.slice(10, 30));
    } finally {
      await bus.close();
    }
  });
});
