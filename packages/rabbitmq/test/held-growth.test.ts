import { brokerAvailable, flowBehindHeld } from '@busbar/testing';
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
      await flowBehindHeld(bus, HANDLED);
      const kept = Math.max(...[...books].map((b) => b.tracked));
      // The held one, plus at most a fold's worth of acked ones behind it: not one per message acked.
      expect(kept).toBeLessThan(HANDLED / 2);
    } finally {
      await bus.close();
    }
  }, 120_000);
});
