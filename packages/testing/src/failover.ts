import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Bus, Message } from '@busbar/core';

/** What a failover run saw: the row it adds to docs/production.md. */
export interface FailoverResult {
  /** Publishes that resolved (the broker confirmed them). */
  readonly confirmed: number;
  /** Publishes that rejected at least once and were sent again by the workload (as a service would). */
  readonly republished: number;
  /** Confirmed messages never delivered to the group. Must be 0. */
  readonly lost: number;
  /** The ids (as published: `failover-<group>-<n>`) of the first 20 lost messages, for a failing test to look up. */
  readonly lostIds: readonly string[];
  /** Deliveries beyond the first of a message (at-least-once redeliveries). */
  readonly duplicated: number;
  /** The longest time without a delivery after the fault began, in ms: how long consumption stopped. */
  readonly pauseMs: number;
}

export interface FailoverWorkload {
  /** Publishes and subscribes; the same bus or two. */
  readonly publisher: Bus;
  readonly consumer: Bus;
  readonly topic: string;
  readonly group: string;
  /** Default 10,000. */
  readonly messages?: number;
  /** Publishes in flight at once (default 64). */
  readonly window?: number;
  /**
   * Breaks (and usually heals) the cluster: called once `faultAt` of the messages are confirmed, while
   * publishing and consuming go on. The workload finishes publishing after it resolves.
   */
  readonly fault: () => Promise<void>;
  /** Fraction of `messages` confirmed before `fault` runs (default 0.3). */
  readonly faultAt?: number;
  /** How long every confirmed message may take to arrive once publishing is done (default 120 s). */
  readonly deliverWithinMs?: number;
}

/**
 * The failover test of every clustered broker: confirmed publishes and group consumption running while
 * `fault` kills, pauses or restarts nodes. A publish that rejects is sent again after a short pause (the
 * message keeps its id), so every message is eventually confirmed; the result counts the confirmed ones that
 * never arrived (must be 0), the redeliveries, and the longest stop in consumption.
 */
export async function runFailover(w: FailoverWorkload): Promise<FailoverResult> {
  const total = w.messages ?? 10_000;
  const window = w.window ?? 64;
  const faultAt = Math.floor(total * (w.faultAt ?? 0.3));
  const seen = new Map<number, number>();
  let faultStarted = 0;
  let lastDelivery = 0;
  let pauseMs = 0;
  const subscription = await w.consumer.subscribe(
    w.topic,
    async (m: Message<{ n: number }>) => {
      const now = Date.now();
      if (faultStarted > 0) pauseMs = Math.max(pauseMs, now - Math.max(lastDelivery, faultStarted));
      lastDelivery = now;
      seen.set(m.payload.n, (seen.get(m.payload.n) ?? 0) + 1);
    },
    { group: w.group },
  );
  let confirmed = 0;
  let republished = 0;
  let next = 0;
  let faulting: Promise<void> | undefined;
  const send = async (n: number): Promise<void> => {
    const id = `failover-${w.group}-${n}`;
    for (let tries = 0; ; tries++) {
      try {
        await w.publisher.publish(w.topic, { n }, { id, key: `k${n % 16}` });
        confirmed++;
        return;
      } catch (error) {
        if (tries === 0) republished++;
        // A publish that keeps failing for minutes means the cluster did not recover: fail the test.
        if (tries > 600) throw error;
        await new Promise((r) => setTimeout(r, 200));
      }
    }
  };
  const worker = async (): Promise<void> => {
    while (next < total) {
      const n = next++;
      await send(n);
      if (confirmed >= faultAt && faulting === undefined) {
        faultStarted = Date.now();
        faulting = w.fault();
      }
    }
  };
  await Promise.all(Array.from({ length: window }, worker));
  await faulting;
  const deadline = Date.now() + (w.deliverWithinMs ?? 120_000);
  while (seen.size < total && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
  // Redeliveries still on their way (an unacked message whose node died) are counted too.
  await new Promise((r) => setTimeout(r, 1_000));
  await subscription.close();
  let duplicated = 0;
  for (const count of seen.values()) duplicated += count - 1;
  const lostIds: string[] = [];
  for (let n = 0; n < total && lostIds.length < 20; n++) if (!seen.has(n)) lostIds.push(`failover-${w.group}-${n}`);
  return { confirmed, republished, lost: total - seen.size, lostIds, duplicated, pauseMs };
}

/**
 * Writes one failover result into `BUSBAR_FAILOVER_REPORT` (default `.failover/` in the working directory);
 * `npm run docs:production` puts every recorded row into the table in docs/production.md.
 */
export function recordFailover(broker: string, fault: string, result: FailoverResult, note = ''): void {
  const dir = process.env.BUSBAR_FAILOVER_REPORT ?? join(process.cwd(), '.failover');
  mkdirSync(dir, { recursive: true });
  const name = `${broker}-${fault}`.replace(/[^a-z0-9]+/gi, '-').toLowerCase();
  const row = { broker, fault, ...result, note, at: new Date().toISOString() };
  writeFileSync(join(dir, `${name}.json`), `${JSON.stringify(row, null, 2)}\n`);
}
