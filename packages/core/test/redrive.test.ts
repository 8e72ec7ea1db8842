import diagnostics from 'node:diagnostics_channel';
import { connect, PermanentError, type SettledEvent, silentLogger } from '@busbar/core';
import { uniqueName, waitFor } from '@busbar/testing';
import { afterEach, describe, expect, it, vi } from 'vitest';
import type { Message, Subscription } from '../src/index.js';
import { TimeoutError } from '../src/index.js';
import { type RedriveParts, redrive, waitUntil } from '../src/redrive.js';
import { Context, inFlight } from '../src/subscription/state.js';
import type { Delivery, Transport } from '../src/transport/spi.js';

describe('redrive', () => {
  afterEach(() => {
    vi.useRealTimers();
  });

  it('re-drives dead letters written in the same millisecond as the walk starts', async () => {
    // A loaded machine runs the last dead-lettering and the caller's redrive in one event-loop turn, within one
    // millisecond; such a dead letter is older than the walk, not "dead again since it began".
    const bus = await connect({ url: `memory://${uniqueName('rd')}`, logger: silentLogger });
    const topic = 'orders.placed';
    let broken = true;
    const handled: number[] = [];
    let dead = 0;
    const onSettled = (event: unknown) => {
      if ((event as SettledEvent).outcome === 'dead-lettered') dead++;
    };
    diagnostics.subscribe('busbar:settled', onSettled);
    try {
      await bus.subscribe<number>(
        topic,
        async (m) => {
          if (broken) throw new PermanentError('down');
          handled.push(m.payload);
        },
        { group: 'g' },
      );
      // The clock stands still (only Date is faked; timers run): every dead letter is stamped with the
      // millisecond the walk starts in.
      vi.useFakeTimers({ toFake: ['Date'], now: Date.now() });
      await bus.publishBatch(
        topic,
        [1, 2, 3].map((payload) => ({ payload })),
      );
      await waitFor(() => dead >= 3, 5_000, 'three dead letters');
      broken = false;
      let moved = 0;
      const redriven = bus.redrive(topic, 'g', { idleMs: 200, onProgress: (n) => (moved = n) });
      // Let the clock move on (a walk may wait for the next millisecond), then again past idleMs to end it.
      const ticking = setInterval(() => vi.setSystemTime(Date.now() + 1), 5);
      try {
        expect(await redriven).toBe(3);
      } finally {
        clearInterval(ticking);
      }
      expect(moved).toBe(3);
      await waitFor(() => handled.length >= 3, 5_000, 'the re-driven messages');
      expect(handled.sort()).toEqual([1, 2, 3]);
    } finally {
      diagnostics.unsubscribe('busbar:settled', onSettled);
      vi.useRealTimers();
      await bus.close();
    }
  });

  it('a filter or onProgress that throws ends the walk and rejects with it: no dead letter is dropped', async () => {
    // The walk's subscription has no retry and no dead letter: a throw in it used to drop (ack) the dead letter,
    // so a throwing filter deleted every dead letter it looked at.
    const bus = await connect({ url: `memory://${uniqueName('rd')}`, logger: silentLogger });
    const topic = 'orders.filter';
    let broken = true;
    await bus.subscribe<number>(
      topic,
      () => {
        if (broken) throw new PermanentError('down');
      },
      { group: 'g' },
    );
    await bus.publishBatch(
      topic,
      [1, 2, 3].map((payload) => ({ payload })),
    );
    await waitFor(async () => (await bus.peekDeadLetters(topic, 'g')).length === 3, 5_000, 'three dead letters');
    const bug = new Error('filter bug');
    const throwing = () => {
      throw bug;
    };
    await expect(bus.redrive(topic, 'g', { filter: throwing })).rejects.toBe(bug);
    await expect(bus.purgeDeadLetters(topic, 'g', { filter: throwing })).rejects.toBe(bug);
    await expect(bus.peekDeadLetters(topic, 'g', { filter: throwing })).rejects.toBe(bug);
    expect(await bus.peekDeadLetters(topic, 'g')).toHaveLength(3);
    // onProgress: the dead letter it reports on was moved and stays moved; the walk ends there.
    broken = false;
    const progress = new Error('progress bug');
    await expect(
      bus.redrive(topic, 'g', {
        onProgress: () => {
          throw progress;
        },
      }),
    ).rejects.toBe(progress);
    expect(await bus.peekDeadLetters(topic, 'g')).toHaveLength(2);
    // The bus still works: the rest re-drive.
    expect(await bus.redrive(topic, 'g')).toBe(2);
    await bus.close();
  });

  it('a peek returns at most 10,000 dead letters on every transport, whatever its limit', async () => {
    // RabbitMQ hands one walk no more than its prefetch (10,000 unacked); Redis and memory handed a peek with a
    // larger limit all of them, so a count of dead letters depended on the broker.
    const bus = await connect({ url: `memory://${uniqueName('rd')}`, logger: silentLogger });
    const topic = 'orders.many';
    let dead = 0;
    const onSettled = (event: unknown) => {
      if ((event as SettledEvent).outcome === 'dead-lettered' && (event as SettledEvent).topic === topic) dead++;
    };
    diagnostics.subscribe('busbar:settled', onSettled);
    await bus.subscribe<number>(
      topic,
      () => {
        throw new PermanentError('down');
      },
      { group: 'g' },
    );
    const total = 10_050;
    for (let i = 0; i < total; i += 1_000) {
      await bus.publishBatch(
        topic,
        Array.from({ length: Math.min(1_000, total - i) }, (_, j) => ({ payload: i + j })),
      );
    }
    await waitFor(() => dead === total, 30_000, 'every message dead-lettered');
    diagnostics.unsubscribe('busbar:settled', onSettled);
    expect(await bus.peekDeadLetters(topic, 'g', { limit: 20_000, idleMs: 200 })).toHaveLength(10_000);
    expect(await bus.peekDeadLetters(topic, 'g', { limit: 10, idleMs: 200 })).toHaveLength(10);
    // The rest is there: a purge (it acks as it goes) reaches them all.
    expect(await bus.purgeDeadLetters(topic, 'g', { idleMs: 200 })).toBe(total);
    await bus.close();
  }, 60_000);

  it('the rate limit never arms a negative timer when the clock moves between reads (NATS CLI run, CI)', async () => {
    // `redrive --rate` waited `due - Date.now()` after checking `due > Date.now()`: two reads of the clock. A
    // millisecond or two between them gave setTimeout a negative length, and Node printed
    // TimeoutNegativeWarning on the CLI's stderr. Here every read of the clock moves it on by 2 ms.
    let clock = 1_000_000;
    vi.spyOn(Date, 'now').mockImplementation(() => {
      clock += 2;
      return clock;
    });
    const lengths: number[] = [];
    const realSetTimeout = globalThis.setTimeout;
    vi.spyOn(globalThis, 'setTimeout').mockImplementation(((fn: () => void, ms?: number) => {
      lengths.push(ms ?? 0);
      return realSetTimeout(fn, 0);
    }) as typeof setTimeout);
    try {
      // Due 3 ms after the clock's next read (1,000,002): the read-twice form would have armed -1.
      await waitUntil(1_000_003);
      expect(lengths).toEqual([1]);
      // Passed already: no timer at all.
      expect(waitUntil(1_000_000)).toBeUndefined();
      expect(lengths).toEqual([1]);
    } finally {
      vi.restoreAllMocks();
    }
  });
});

describe('a re-drive against a broker that stopped answering', () => {
  it('ends at the first publish that timed out instead of waiting out every next one', async () => {
    let published = 0;
    const delivery = (n: number): Delivery => ({
      id: `d${n}`,
      topic: 'orders.g.dlq',
      key: undefined,
      headers: { 'busbar-dl-topic': 'orders', 'busbar-dl-last-failure': '1' },
      body: new Uint8Array(),
      timestamp: 1,
      attempt: 1,
      raw: undefined,
      ack: async () => undefined,
      retry: async () => undefined,
      release: async () => undefined,
    });
    const parts: RedriveParts = {
      transport: {
        publish: async () => {
          published++;
          throw new TimeoutError('Publish not confirmed within 15000 ms');
        },
      } as unknown as Transport,
      logger: silentLogger,
      subscribe: async (handler) => {
        // Concurrency 1, as the walk's real subscription: one dead letter at a time.
        void (async () => {
          for (let n = 0; n < 5; n++) {
            const d = delivery(n);
            const message = { id: d.id, deadLetter: { lastFailureAt: new Date(1) } } as unknown as Message<unknown>;
            await handler(message, new Context(inFlight(d), undefined));
          }
        })();
        return { close: async () => undefined } as unknown as Subscription;
      },
    };
    const error = await redrive(parts, 'orders', { idleMs: 5_000 }).catch((e: unknown) => e);
    expect((error as { code?: string }).code).toBe('BUSBAR_TIMEOUT');
    expect(published).toBe(1);
  });
});
