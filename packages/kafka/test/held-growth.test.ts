import { connect, silentLogger } from '@busbar/core';
import { brokerAvailable, brokerUrls, flowBehindHeld } from '@busbar/testing';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { driver } from '../src/index.js';
import { PartitionTracker } from '../src/tracker.js';

const ok = await brokerAvailable('kafka');

const HANDLED = 20_000;

describe.runIf(ok)('kafka: bookkeeping behind a message held unsettled', () => {
  afterEach(() => {
    vi.restoreAllMocks();
  });

  it('a broadcast subscription holding a delayed message keeps its offsets bounded while later ones flow', async () => {
    // The trackers the driver makes, to read their size: `add` is called on each one as records arrive.
    const trackers = new Set<PartitionTracker>();
    const add = PartitionTracker.prototype.add;
    vi.spyOn(PartitionTracker.prototype, 'add').mockImplementation(function (this: PartitionTracker, offset) {
      trackers.add(this);
      return add.call(this, offset);
    });
    const bus = await connect({ url: brokerUrls.kafka, driver, logger: silentLogger, partitions: 1 });
    try {
      await flowBehindHeld(bus, HANDLED);
      const kept = Math.max(...[...trackers].map((t) => t.pending));
      // The held one, plus at most a fold's worth of handled ones behind it: not one per message handled.
      expect(kept).toBeLessThan(HANDLED / 2);
    } finally {
      await bus.close();
    }
  }, 120_000);
});
