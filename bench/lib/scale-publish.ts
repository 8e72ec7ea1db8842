import type { BatchEntry, Bus, Topic } from '@busbar/core';
import { BATCH } from './util.js';

/** Publishes `count` copies of `payload` with `publishBatch` of 1000 (each awaited), as the main bench fills a backlog. */
export async function publishBacklog(
  bus: Bus,
  topic: Topic<Uint8Array>,
  count: number,
  payload: Uint8Array,
): Promise<void> {
  for (let sent = 0; sent < count; ) {
    const n = Math.min(BATCH, count - sent);
    const entries: BatchEntry<Uint8Array>[] = Array.from({ length: n }, () => ({ payload }));
    await bus.publishBatch(topic, entries);
    sent += n;
  }
}
