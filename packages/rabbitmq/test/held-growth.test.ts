import { brokerAvailable, collect, uniqueName } from '@busbar/testing';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { ChannelAcks } from '../src/acks.js';
import { open } from './helpers.js';

const ok = await brokerAvailable('rabbitmq');

const HANDLED = 20_000;

describe.runIf(ok)('rabbitmq: ack bookkeeping behind a message held unsettled', () => {
  afterEach(() => {
    vi.restoreAllMocks();
  });

  it('a broadcast subscription holding a delayed message keeps its delivery tags bounded while later ones flow', async () => {
    // The consumer channels' ack books, to read their size: `delivered` is called on each one per message.
    const books = new Set<ChannelAcks>();
    const delivered = ChannelAcks.prototype.delivered;
    vi.spyOn(ChannelAcks.prototype, 'delivered').mockImplementation(function (this: ChannelAcks, tag) {
      books.add(this);
      delivered.call(this, tag);
    });
    const bus = await open();
    try {
      const topic = uniqueName('held');
      const got = collect<number>();
      // No group: core holds a message that is not due yet in process (unacked) until it is, up to weeks; the
      // delay is the publisher's (or a foreign producer's `busbar-deliver-at`).
      await bus.subscribe<number>(topic, async (m) => got.push(m.payload));
      await bus.publish(topic, -1, { delayMs: 600_000 });
      for (let start = 0; start < HANDLED; start += 1_000) {
        await bus.publishBatch(
          topic,
          Array.from({ length: 1_000 }, (_, i) => ({ payload: start + i })),
        );
      }
      await got.waitForCount(HANDLED, 60_000);
      expect(got.items).not.toContain(-1);
      const kept = Math.max(...[...books].map((b) => b.tracked));
      // The held one, plus at most a fold's worth of acked ones behind it: not one per message acked.
      expect(kept).toBeLessThan(HANDLED / 2);
    } finally {
      await bus.close();
    }
  }, 120_000);
});
