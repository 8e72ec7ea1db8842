import { afterEach, describe, expect, it, vi } from 'vitest';
import { BusbarError, connect, silentLogger } from '../src/index.js';

afterEach(() => {
  vi.useRealTimers();
});

describe('responder close', () => {
  it('a handler that never settles keeps no timer once its responder is closed', async () => {
    const bus = await connect({ url: 'memory://responder-close', logger: silentLogger, closeTimeoutMs: 100 });
    const caller = await connect({ url: 'memory://responder-close', logger: silentLogger });
    const responder = await bus.respond('rr.hang', () => new Promise(() => undefined), { handlerTimeoutMs: 120_000 });
    vi.useFakeTimers();
    const pending = caller.request('rr.hang', 1, { timeoutMs: 1_000 }).catch((e: unknown) => e);
    await vi.advanceTimersByTimeAsync(1_100);
    expect(BusbarError.is(await pending, 'BUSBAR_TIMEOUT')).toBe(true);
    // What is left now is the responder's handler timeout (120 s) and nothing of the caller's.
    const closing = responder.close();
    await vi.advanceTimersByTimeAsync(200);
    await closing;
    expect(vi.getTimerCount()).toBe(0);
    vi.useRealTimers();
    await caller.close();
    await bus.close();
  });
});

describe('batch subscription close', () => {
  it('a batch handler that never settles keeps no timer once the subscription is closed', async () => {
    const timers = () => process.getActiveResourcesInfo().filter((r) => r === 'Timeout').length;
    const before = timers();
    const bus = await connect({ url: 'memory://batch-close-hang', logger: silentLogger, closeTimeoutMs: 100 });
    await bus.subscribeBatch('b.hang', () => new Promise(() => undefined), {
      group: 'g',
      handlerTimeoutMs: 120_000,
      batch: { maxSize: 10, maxWaitMs: 10 },
    });
    await bus.publish('b.hang', 1);
    await new Promise((resolve) => setTimeout(resolve, 50));
    vi.useFakeTimers();
    const closing = bus.close();
    await vi.advanceTimersByTimeAsync(1_000);
    await closing;
    // Fake timers see only what was set after they were installed: the batch call's 120 s bound predates them,
    // so ask Node which timers still hold the process (a ref'd one would; other tests' come and go).
    vi.useRealTimers();
    expect(timers()).toBeLessThanOrEqual(before);
  });
});
