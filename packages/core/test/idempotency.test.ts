import diagnostics from 'node:diagnostics_channel';
import {
  connect,
  type IdempotencyStore,
  MemoryIdempotencyStore,
  type Message,
  type SettledEvent,
  silentLogger,
} from '@busbar/core';
import { describeIdempotencyStore, waitFor } from '@busbar/testing';
import { describe, expect, it } from 'vitest';

// One shared map stands for the shared backend two consumers would use.
const shared = new MemoryIdempotencyStore();
describeIdempotencyStore('memory', () => shared);

describe('a store that breaks its contract', () => {
  // JavaScript stores throw synchronously, return bare values or answer nonsense. Core chained `.catch` on
  // release/complete in its settle path: a synchronous throw there left the message unsettled for good.
  const thrower = (): never => {
    throw new Error('store down');
  };
  const cases: [string, Record<string, unknown>][] = [
    ['throws synchronously everywhere', { claim: thrower, complete: thrower, release: thrower }],
    [
      'answers a claim with nonsense and returns bare values',
      { claim: () => true, complete: () => 1, release: () => undefined },
    ],
  ];
  for (const [label, store] of cases) {
    it(`${label}: the message is retried with backoff, dead-lettered, and the bus still works`, async () => {
      const bus = await connect({
        url: `memory://broken-store-${cases.findIndex((c) => c[0] === label)}`,
        logger: silentLogger,
      });
      const runs: number[] = [];
      await bus.subscribe<number>('idem.broken', (m) => void runs.push(m.payload), {
        group: 'g',
        idempotency: { store: store as unknown as IdempotencyStore },
        retry: { maxAttempts: 3, initialDelayMs: 20, maxDelayMs: 20 },
      });
      const dead: Message[] = [];
      await bus.subscribeDeadLetters('idem.broken', 'g', (m) => void dead.push(m));
      await bus.publish('idem.broken', 1);
      await waitFor(() => dead.length === 1, 5_000, 'the dead letter');
      expect(runs).toEqual([]);
      expect(dead[0]?.deadLetter?.attempts).toBe(3);
      const seen: number[] = [];
      await bus.subscribe<number>('idem.after', (m) => void seen.push(m.payload), { group: 'g' });
      await bus.publish('idem.after', 2);
      await waitFor(() => seen.length === 1, 5_000, 'a message after');
      await bus.close();
    });
  }

  it('a store whose complete() throws synchronously: the message is acked once, not left unsettled', async () => {
    const inner = new MemoryIdempotencyStore();
    const store = { claim: inner.claim.bind(inner), release: inner.release.bind(inner), complete: thrower };
    const bus = await connect({ url: 'memory://broken-complete', logger: silentLogger });
    const outcomes: string[] = [];
    const onSettled = (e: unknown) => {
      const event = e as SettledEvent;
      if (event.topic === 'idem.complete') outcomes.push(event.outcome);
    };
    diagnostics.subscribe('busbar:settled', onSettled);
    const runs: number[] = [];
    await bus.subscribe<number>('idem.complete', (m) => void runs.push(m.payload), {
      group: 'g',
      idempotency: { store },
    });
    await bus.publish('idem.complete', 1);
    await bus.publish('idem.complete', 2);
    try {
      await waitFor(() => outcomes.length === 2, 5_000, 'both settled');
      expect(outcomes).toEqual(['acked', 'acked']);
      expect(runs).toEqual([1, 2]);
    } finally {
      diagnostics.unsubscribe('busbar:settled', onSettled);
      await bus.close();
    }
  });
});
