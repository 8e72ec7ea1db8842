import { type IdempotencyStore, MemoryIdempotencyStore, type Message } from '@busbar/core';
import { expect, it } from 'vitest';
import { sleep } from '../wait.js';
import { recorder, type Suite } from './context.js';

const RETRY = { maxAttempts: 3, initialDelayMs: 100, maxDelayMs: 400, jitter: 0 } as const;

/**
 * `subscribeBatch`: arrays of at most `maxSize`, a partial batch after `maxWaitMs`, one outcome per message
 * (`context.fail` retries and dead-letters one, a throw all), idempotency per message, order per key, and
 * close() handing over what was collected.
 */
export function batchTests(s: Suite): void {
  it('hands messages over in batches of at most maxSize, in order per key, each acked once', async () => {
    const bus = await s.bus();
    const topic = s.topic('batch');
    const group = s.group();
    const batches: number[][] = [];
    await bus.subscribeBatch<number>(topic, async (messages) => void batches.push(messages.map((m) => m.payload)), {
      group,
      batch: { maxSize: 10, maxWaitMs: 100 },
    });
    await s.settle();
    await bus.publishBatch(
      topic,
      Array.from({ length: 45 }, (_, n) => ({ payload: n, key: 'one-key' })),
    );
    await s.waitFor(() => batches.flat().length >= 45, 20_000, 'all 45 messages');
    await sleep(s.ms(1_000));
    expect(batches.flat()).toEqual(Array.from({ length: 45 }, (_, n) => n));
    expect(batches.every((b) => b.length >= 1 && b.length <= 10)).toBe(true);
    // Batching happened: fewer calls than messages.
    expect(batches.length).toBeLessThan(45);
  });

  it('a partial batch is handed over after maxWaitMs', async () => {
    const bus = await s.bus();
    const topic = s.topic('batchwait');
    const batches: Message<string>[][] = [];
    await bus.subscribeBatch<string>(topic, (messages) => void batches.push([...messages]), {
      group: s.group(),
      batch: { maxSize: 1_000, maxWaitMs: 200 },
    });
    await s.settle();
    // One key: Kafka keeps the two on one partition, in order.
    await bus.publish(topic, 'a', { headers: { tenant: 'acme' }, key: 'k' });
    await bus.publish(topic, 'b', { key: 'k' });
    await s.waitFor(() => batches.flat().length >= 2, 20_000, 'the partial batch');
    const all = batches.flat();
    expect(all.map((m) => m.payload)).toEqual(['a', 'b']);
    expect(all[0]?.headers).toEqual({ tenant: 'acme' });
    expect(all[0]?.attempt).toBe(1);
  });

  it('context.fail retries one message and dead-letters it at the end; the rest are not redelivered', async () => {
    const bus = await s.bus();
    const topic = s.topic('batchfail');
    const group = s.group();
    const seen: Array<{ n: number; attempt: number }> = [];
    await bus.subscribeBatch<{ n: number }>(
      topic,
      (messages, context) => {
        for (const m of messages) {
          seen.push({ n: m.payload.n, attempt: m.attempt });
          // A non-Error reason: it must still become the dead letter's metadata.
          if (m.payload.n === 3) context.fail(m, 'n=3 is bad');
        }
      },
      { group, retry: RETRY, batch: { maxSize: 10, maxWaitMs: 50 } },
    );
    await s.settle();
    await bus.publishBatch(
      topic,
      Array.from({ length: 6 }, (_, n) => ({ payload: { n } })),
    );
    const dead = recorder<{ n: number }>();
    await bus.subscribeDeadLetters<{ n: number }>(topic, group, dead.handler as never);
    await s.waitFor(() => dead.messages.length >= 1, 30_000, 'the dead letter');
    await sleep(s.ms(1_000));
    expect(seen.filter((x) => x.n === 3).map((x) => x.attempt)).toEqual([1, 2, 3]);
    for (const n of [0, 1, 2, 4, 5]) expect(seen.filter((x) => x.n === n)).toHaveLength(1);
    expect(dead.messages).toHaveLength(1);
    expect(dead.messages[0]?.payload).toEqual({ n: 3 });
    expect(dead.messages[0]?.deadLetter?.attempts).toBe(3);
    expect(dead.messages[0]?.deadLetter?.errorMessage).toContain('n=3 is bad');
  });

  it('a throw fails every message of the batch; each is retried on its own and then succeeds', async () => {
    const bus = await s.bus();
    const topic = s.topic('batchthrow');
    const done: Array<{ n: number; attempt: number }> = [];
    let thrown = false;
    await bus.subscribeBatch<{ n: number }>(
      topic,
      (messages) => {
        if (!thrown && messages.length > 0) {
          thrown = true;
          throw new Error('bulk insert failed');
        }
        for (const m of messages) done.push({ n: m.payload.n, attempt: m.attempt });
      },
      { group: s.group(), retry: RETRY, batch: { maxSize: 50, maxWaitMs: 300 } },
    );
    await s.settle();
    await bus.publishBatch(
      topic,
      Array.from({ length: 5 }, (_, n) => ({ payload: { n } })),
    );
    await s.waitFor(() => done.length >= 5, 30_000, 'all five handled');
    await sleep(s.ms(800));
    expect(done.map((d) => d.n).sort()).toEqual([0, 1, 2, 3, 4]);
    // The failed first batch is retried message by message: none is lost, none handled twice after success.
    expect(new Set(done.map((d) => d.n)).size).toBe(5);
    expect(done.some((d) => d.attempt === 2)).toBe(true);
  });

  it('idempotency holds per message: a duplicate id in a batch subscription is handled once', async () => {
    const bus = await s.bus();
    const topic = s.topic('batchidem');
    const handled: string[] = [];
    await bus.subscribeBatch<string>(topic, (messages) => void handled.push(...messages.map((m) => m.id)), {
      group: s.group(),
      idempotency: { store: new MemoryIdempotencyStore() },
      batch: { maxSize: 10, maxWaitMs: 50 },
    });
    await s.settle();
    await bus.publish(topic, 'x', { id: 'same-id' });
    await bus.publish(topic, 'y', { id: 'other-id' });
    await bus.publish(topic, 'x', { id: 'same-id' });
    await s.waitFor(() => handled.length >= 2, 20_000, 'both ids');
    await sleep(s.ms(800));
    expect(handled.sort()).toEqual(['other-id', 'same-id']);
  });

  it('messages of one key reach the batch handler in order when an async idempotency store answers out of order', async () => {
    const bus = await s.bus();
    const topic = s.topic('batchorder');
    const memory = new MemoryIdempotencyStore();
    // Claims answer after a random pause: the stage before the handler finishes out of arrival order.
    const store: IdempotencyStore = {
      claim: async (key, leaseMs) => {
        await sleep(Math.random() * 30);
        return memory.claim(key, leaseMs);
      },
      complete: (key, ttlMs) => memory.complete(key, ttlMs),
      release: (key) => memory.release(key),
    };
    const seen: number[] = [];
    await bus.subscribeBatch<number>(topic, (messages) => void seen.push(...messages.map((m) => m.payload)), {
      group: s.group(),
      idempotency: { store },
      batch: { maxSize: 10, maxWaitMs: 50 },
    });
    await s.settle();
    await bus.publishBatch(
      topic,
      Array.from({ length: 30 }, (_, n) => ({ payload: n, key: 'one-key' })),
    );
    await s.waitFor(() => seen.length >= 30, 20_000, 'all 30 messages');
    expect(seen).toEqual(Array.from({ length: 30 }, (_, n) => n));
  });

  it('waiting for a batch does not count against handlerTimeoutMs: the message is handled once, not timed out', async () => {
    const bus = await s.bus();
    const topic = s.topic('batchslowwait');
    const seen: Array<{ payload: string; attempt: number }> = [];
    await bus.subscribeBatch<string>(
      topic,
      (messages) => void seen.push(...messages.map((m) => ({ payload: m.payload, attempt: m.attempt }))),
      { group: s.group(), handlerTimeoutMs: 300, retry: RETRY, batch: { maxSize: 100, maxWaitMs: 900 } },
    );
    await s.settle();
    await bus.publish(topic, 'slow-to-batch');
    await s.waitFor(() => seen.length >= 1, 20_000, 'the partial batch');
    await sleep(s.ms(1_500));
    expect(seen).toEqual([{ payload: 'slow-to-batch', attempt: 1 }]);
  });

  it('close() hands the collected messages over and waits for the batch; nothing is lost', async () => {
    const bus = await s.bus();
    const topic = s.topic('batchclose');
    const group = s.group();
    const got: number[] = [];
    const sub = await bus.subscribeBatch<number>(
      topic,
      async (messages) => {
        await sleep(200);
        got.push(...messages.map((m) => m.payload));
      },
      // A wait far beyond the test: only close() can hand this partial batch over in time.
      { group, batch: { maxSize: 1_000, maxWaitMs: 60_000 } },
    );
    await s.settle();
    await bus.publishBatch(
      topic,
      [1, 2, 3].map((payload) => ({ payload })),
    );
    await sleep(s.ms(1_500));
    const closing = Date.now();
    await sub.close();
    expect(Date.now() - closing).toBeLessThan(10_000);
    expect(got.sort()).toEqual([1, 2, 3]);
    // Acked, not released: a new member of the group gets nothing again.
    const again: number[] = [];
    await bus.subscribe<number>(topic, (m) => void again.push(m.payload), { group });
    await s.settle();
    await sleep(s.ms(1_500));
    expect(again).toEqual([]);
  });

  it('invalid batch options are a typed ConfigError, and the bus still works', async () => {
    const bus = await s.bus();
    const topic = s.topic('batchopts');
    for (const batch of [{ maxSize: 0 }, { maxSize: 1.5 }, { maxWaitMs: -1 }, { size: 3 }]) {
      await expect(
        bus.subscribeBatch(topic, () => undefined, { group: s.group(), batch: batch as never }),
      ).rejects.toMatchObject({ code: 'BUSBAR_CONFIG', retryable: false });
    }
    const got = recorder<string>();
    await bus.subscribe(topic, got.handler, { group: s.group() });
    await s.settle();
    await bus.publish(topic, 'still fine');
    await s.waitFor(() => got.messages.length === 1, 20_000, 'a message after the bad options');
  });
}
