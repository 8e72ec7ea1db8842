import { connect, type Message, silentLogger } from '@busbar/core';
import { brokerAvailable, brokerUrls, sleep, uniqueName, waitFor } from '@busbar/testing';
import { afterAll, describe, expect, it } from 'vitest';
import { driver } from '../src/index.js';
import { cleanupStreams } from './helpers.js';

const ok = await brokerAvailable('nats');

interface Payload {
  readonly n: number;
  readonly bad?: boolean;
}

describe.runIf(ok)('nats retries', () => {
  const prefixes: string[] = [];
  const base = () => {
    const p = uniqueName('nrt');
    prefixes.push(p);
    return p;
  };
  afterAll(async () => {
    await cleanupStreams(prefixes);
  });

  it('failing messages waiting for their retry do not hold the group: 2,000 healthy ones flow behind 150 failing', async () => {
    const bus = await connect({ url: brokerUrls.nats, driver, logger: silentLogger, maxAgeMs: 3_600_000 });
    const topic = `${base()}.orders`;
    const group = 'workers';
    const attempts = new Map<string, number[]>();
    const headersSeen = new Map<string, Record<string, string>[]>();
    let healthy = 0;
    let healthyDoneAt = 0;
    let firstFinalAttemptAt = 0;
    await bus.subscribe<Payload>(
      topic,
      async (m: Message<Payload>) => {
        if (!m.payload.bad) {
          if (++healthy === 2_000) healthyDoneAt = Date.now();
          return;
        }
        if (m.attempt === 3 && firstFinalAttemptAt === 0) firstFinalAttemptAt = Date.now();
        attempts.set(m.id, [...(attempts.get(m.id) ?? []), m.attempt]);
        headersSeen.set(m.id, [...(headersSeen.get(m.id) ?? []), { ...m.headers }]);
        throw new Error(`bad ${m.payload.n}`);
      },
      { group, retry: { maxAttempts: 3, initialDelayMs: 4_000, jitter: 0 } },
    );
    const failing = Array.from({ length: 150 }, (_, n) => ({
      payload: { n, bad: true },
      headers: { origin: `o${n}` },
    }));
    await bus.publishBatch(topic, failing);
    await bus.publishBatch(
      topic,
      Array.from({ length: 2_000 }, (_, n) => ({ payload: { n } })),
    );
    await waitFor(() => healthy >= 2_000, 60_000, '2,000 healthy messages behind 150 failing ones');
    // Not held behind the failing ones: had their waits for a retry (4 s, then 8 s) kept the prefetch window, the
    // healthy ones could only flow once the failing ones were dead-lettered, after their last attempt. An
    // ordering, not a time limit, so a loaded machine cannot fail it.
    expect(firstFinalAttemptAt === 0 || healthyDoneAt < firstFinalAttemptAt).toBe(true);
    // The retries waiting in the retry consumer show in the group's lag/pending.
    const [row] = await bus.lag();
    expect((row?.lag ?? 0) + (row?.pending ?? 0)).toBeGreaterThan(0);

    const dead: Message<unknown>[] = [];
    await bus.subscribeDeadLetters(topic, group, async (m) => {
      dead.push(m);
    });
    await waitFor(() => dead.length >= 150, 30_000, '150 dead letters');
    await sleep(300);
    expect(dead).toHaveLength(150);
    expect(new Set(dead.map((m) => m.deadLetter?.attempts))).toEqual(new Set([3]));
    // Every failing message ran exactly 3 times, counted 1, 2, 3, with its headers on every attempt.
    expect(attempts.size).toBe(150);
    for (const [id, seen] of attempts) {
      expect(seen, id).toEqual([1, 2, 3]);
      const origin = headersSeen.get(id)?.[0]?.origin;
      expect(origin).toMatch(/^o\d+$/);
      expect(headersSeen.get(id)?.map((h) => h.origin)).toEqual([origin, origin, origin]);
    }
    // The first failure is carried across attempts (it was the last one before).
    for (const letter of dead) {
      const info = letter.deadLetter;
      expect(info?.topic).toBe(topic);
      expect(info?.lastFailureAt.getTime() ?? 0).toBeGreaterThanOrEqual((info?.firstFailureAt.getTime() ?? 0) + 2_500);
    }
    expect(healthy).toBe(2_000);
    await bus.close();
  }, 90_000);

  it("a retry goes back to its own group only, and close() stops both of the group's consumers", async () => {
    const bus = await connect({ url: brokerUrls.nats, driver, logger: silentLogger, maxAgeMs: 3_600_000 });
    const topic = `${base()}.events`;
    const a: number[] = [];
    const b: number[] = [];
    let failA = true;
    const subA = await bus.subscribe<number>(
      topic,
      async (m) => {
        a.push(m.attempt);
        if (failA) throw new Error('a fails once');
      },
      { group: 'ga', retry: { maxAttempts: 5, initialDelayMs: 200, jitter: 0 } },
    );
    const subB = await bus.subscribe<number>(topic, async (m) => void b.push(m.attempt), { group: 'gb' });
    await bus.publish(topic, 1);
    await waitFor(() => a.length >= 1 && b.length >= 1, 5_000, 'both groups');
    failA = false;
    await waitFor(() => a.length >= 2, 5_000, 'the retry in group ga');
    await sleep(500);
    expect(a).toEqual([1, 2]);
    expect(b).toEqual([1]);

    // Closed: a retry scheduled before the close is not delivered to this (closed) member.
    failA = true;
    await bus.publish(topic, 2);
    await waitFor(() => a.length >= 3, 5_000, 'the next failure');
    await subA.close();
    await sleep(800);
    expect(a).toHaveLength(3);
    // Another member of the group picks the retry up, with its attempt.
    failA = false;
    const later: number[] = [];
    await bus.subscribe<number>(topic, async (m) => void later.push(m.attempt), {
      group: 'ga',
      retry: { maxAttempts: 5, initialDelayMs: 200 },
    });
    // nats-server 2.9 may hand the copy to the closed member's stale pull request; the retry consumer's
    // ack wait (5 s at most) brings it back then.
    await waitFor(() => later.length >= 1, 10_000, 'the retry on a new member');
    expect(later).toEqual([2]);
    await subB.close();
    await bus.close();
  }, 30_000);
});
