import { connect, MemoryIdempotencyStore, silentLogger } from '@busbar/core';
import { brokerAvailable, brokerUrls, collect, sleep, uniqueName } from '@busbar/testing';
import { connect as natsConnect } from 'nats';
import { afterAll, describe, expect, it } from 'vitest';
import { driver } from '../src/index.js';
import { cleanupStreams } from './helpers.js';

const ok = await brokerAvailable('nats');
const enc = new TextEncoder();

describe.runIf(ok)('nats ids of foreign messages', () => {
  const prefixes: string[] = [];
  afterAll(async () => {
    await cleanupStreams(prefixes);
  });

  it('a stream deleted and created again repeats no ids: idempotency and retries still take its new messages', async () => {
    const p = uniqueName('nse');
    prefixes.push(p);
    const topic = `${p}.in`;
    const store = new MemoryIdempotencyStore();
    const nc = await natsConnect({ servers: new URL(brokerUrls.nats).host });
    const got = collect<{ id: string; payload: unknown; attempt: number }>();
    const run = async (payload: string, count: number): Promise<void> => {
      const bus = await connect({ url: brokerUrls.nats, driver, logger: silentLogger });
      try {
        await bus.subscribe(
          topic,
          async (m) => {
            got.push({ id: m.id, payload: m.payload, attempt: m.attempt });
            // Each message fails once: its retry copy's dedup id is its place in the stream.
            if (m.attempt === 1) throw new Error('once');
          },
          { group: 'g', idempotency: { store }, retry: { maxAttempts: 3, initialDelayMs: 50, maxDelayMs: 50 } },
        );
        // A foreign publish without Nats-Msg-Id: its identity is its place in the stream (sequence 1 both times).
        nc.publish(topic, enc.encode(JSON.stringify(payload)));
        await nc.flush();
        await got.waitForCount(count, 5_000);
        await sleep(100);
      } finally {
        await bus.close();
      }
    };
    try {
      await run('first', 2);
      const jsm = await nc.jetstreamManager();
      await jsm.streams.delete(`BUSBAR_${p}`);
      await sleep(5); // creation times are in ms: the new stream's differs
      await run('second', 4);
    } finally {
      await nc.close();
    }
    expect(got.items.map((m) => [m.payload, m.attempt])).toEqual([
      ['first', 1],
      ['first', 2],
      ['second', 1],
      ['second', 2],
    ]);
    const [first, , second] = got.items.map((m) => m.id);
    expect(first).toMatch(new RegExp(`^BUSBAR_${p}:\\d+:1$`));
    expect(second).toMatch(new RegExp(`^BUSBAR_${p}:\\d+:1$`));
    expect(second).not.toBe(first);
  });
});
