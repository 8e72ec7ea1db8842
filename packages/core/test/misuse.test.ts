import { describe, expect, it } from 'vitest';
import { BusbarError, connect, type IdempotencyStore, MemoryIdempotencyStore, silentLogger } from '../src/index.js';

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

async function until(check: () => boolean, ms = 3_000): Promise<void> {
  const end = Date.now() + ms;
  while (!check()) {
    if (Date.now() > end) throw new Error('timed out');
    await sleep(10);
  }
}

describe('middleware misuse', () => {
  it('next() after its middleware finished does not run the handler and rejects typed; twice fails the message', async () => {
    const bus = await connect({ url: 'memory://misuse-next', logger: silentLogger });
    const ran: string[] = [];
    let late: Promise<void> | undefined;
    await bus.subscribe('late', () => void ran.push('late'), {
      group: 'g',
      middleware: [
        (_m, _c, next) => {
          setTimeout(() => {
            late = next();
          }, 20);
        },
      ],
    });
    await bus.publish('late', 1);
    await until(() => late !== undefined);
    expect(BusbarError.is(await late?.catch((e: unknown) => e), 'BUSBAR_CONFIG')).toBe(true);
    const dead: string[] = [];
    await bus.subscribe('twice', () => void ran.push('twice'), {
      group: 'g',
      retry: false,
      middleware: [
        async (_m, _c, next) => {
          await next();
          void next(); // not awaited: must not crash the process
        },
      ],
    });
    await bus.subscribeDeadLetters('twice', 'g', (m) => void dead.push(m.deadLetter?.errorName ?? ''));
    await bus.publish('twice', 1);
    await until(() => dead.length === 1);
    expect(dead).toEqual(['ConfigError']);
    expect(ran).toEqual(['twice']);
    await bus.close();
  });

  it('use() with a middleware that throws when read is a ConfigError', async () => {
    const bus = await connect({ url: 'memory://misuse-use', logger: silentLogger });
    const getter = Object.defineProperty({}, 'consume', {
      enumerable: true,
      get() {
        throw new Error('boom');
      },
    });
    expect(() => bus.use(getter)).toThrow(expect.objectContaining({ code: 'BUSBAR_CONFIG' }));
    const proxy = new Proxy(
      {},
      {
        ownKeys: () => {
          throw new Error('no keys');
        },
      },
    );
    expect(() => bus.use(proxy)).toThrow(expect.objectContaining({ code: 'BUSBAR_CONFIG' }));
    await bus.publish('still.works', 1);
    await bus.close();
  });

  it('a publish middleware that never settles: the publish ends with its signal, or with the bus', async () => {
    const bus = await connect({ url: 'memory://misuse-pubmw', logger: silentLogger });
    bus.use({ publish: () => new Promise<void>(() => undefined) });
    const aborted = await bus.publish('t', 1, { signal: AbortSignal.timeout(50) }).catch((e: unknown) => e);
    expect(BusbarError.is(aborted, 'BUSBAR_ABORTED')).toBe(true);
    const batch = await bus
      .publishBatch('t', [{ payload: 1 }], { signal: AbortSignal.timeout(50) })
      .catch((e: unknown) => e);
    expect(BusbarError.is(batch, 'BUSBAR_ABORTED')).toBe(true);
    const pending = bus.publish('t', 2).catch((e: unknown) => e);
    await bus.close();
    expect(BusbarError.is(await pending, 'BUSBAR_CLOSED')).toBe(true);
  });
});

describe('idempotency store that never answers', () => {
  it('a hung claim fails the message (retried, typed), a hung complete still acks it', async () => {
    const bus = await connect({ url: 'memory://misuse-idem', logger: silentLogger });
    const memory = new MemoryIdempotencyStore();
    let hang: 'claim' | 'complete' | undefined = 'claim';
    const store: IdempotencyStore = {
      claim: (key, lease) => (hang === 'claim' ? new Promise(() => undefined) : memory.claim(key, lease)),
      complete: (key, ttl) => (hang === 'complete' ? new Promise(() => undefined) : memory.complete(key, ttl)),
      release: (key) => memory.release(key),
    };
    const handled: number[] = [];
    const failures: string[] = [];
    await bus.subscribe('idem.hang', (m) => void handled.push(m.attempt), {
      group: 'g',
      handlerTimeoutMs: 100,
      retry: { maxAttempts: 5, initialDelayMs: 10, maxDelayMs: 10 },
      idempotency: { store },
      middleware: [
        async (_m, _c, next) => {
          try {
            await next();
          } catch (error) {
            failures.push((error as Error).name);
            throw error;
          }
        },
      ],
    });
    await bus.publish('idem.hang', 1);
    await sleep(150);
    hang = 'complete';
    await until(() => handled.length === 1);
    expect(handled[0]).toBeGreaterThan(1);
    // Each attempt's claim timed out before the handler (the middleware saw no handler failure).
    expect(failures).toEqual([]);
    await bus.publish('idem.hang', 2);
    await until(() => handled.length === 2);
    await bus.close();
  });
});

describe('batch misuse', () => {
  it('context.fail with something not of the batch is a ConfigError that fails the batch', async () => {
    const bus = await connect({ url: 'memory://misuse-batchfail', logger: silentLogger });
    const dead: string[] = [];
    await bus.subscribeBatch(
      'b',
      (messages, context) => {
        context.fail({ ...(messages[0] as object) } as never, new Error('x'));
      },
      { group: 'g', retry: false, batch: { maxSize: 10, maxWaitMs: 10 } },
    );
    await bus.subscribeDeadLetters('b', 'g', (m) => void dead.push(m.deadLetter?.errorName ?? ''));
    await bus.publish('b', 1);
    await until(() => dead.length === 1);
    expect(dead).toEqual(['ConfigError']);
    await bus.close();
  });
});
