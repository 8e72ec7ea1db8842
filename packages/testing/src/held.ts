import type { Bus } from '@busbar/core';
import { expect } from 'vitest';
import { uniqueName } from './brokers.js';
import { collect } from './wait.js';

/**
 * A broadcast subscription (no group) holding one message unsettled while `count` later ones are published
 * and handled: core keeps a message that is not due yet in process until it is (here 10 minutes; a publisher's
 * `delayMs` or a foreign `busbar-deliver-at` may ask for weeks). For checking that a driver's bookkeeping
 * behind such a message stays bounded.
 */
export async function flowBehindHeld(bus: Bus, count: number, timeoutMs = 60_000): Promise<void> {
  const topic = uniqueName('held');
  const got = collect<number>();
  await bus.subscribe<number>(topic, async (m) => got.push(m.payload));
  await bus.publish(topic, -1, { delayMs: 600_000 });
  for (let start = 0; start < count; start += 1_000) {
    await bus.publishBatch(
      topic,
      Array.from({ length: Math.min(1_000, count - start) }, (_, i) => ({ payload: start + i })),
    );
  }
  await got.waitForCount(count, timeoutMs);
  expect(got.items).not.toContain(-1);
}
