import {
  type Bus,
  BusbarError,
  type ClaimResult,
  connect,
  type IdempotencyStore,
  MemoryIdempotencyStore,
  type RemoteError,
  silentLogger,
} from '@busbar/core';
import { type Capabilities, defineDriver, type IncomingRequest } from '@busbar/core/transport';
import { uniqueName } from '@busbar/testing';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { z } from 'zod';

const open: Bus[] = [];
afterEach(async () => {
  await Promise.all(open.splice(0).map((bus) => bus.close()));
});

async function bus(): Promise<Bus> {
  const b = await connect({ url: `memory://${uniqueName('rr')}`, logger: silentLogger });
  open.push(b);
  return b;
}

/** The bus's internal diagnostics (not public API), read the way @busbar/testing reads them. */
function diagnostics(b: Bus): { pendingRequests: number; servingRequests: number; responders: number } {
  const read = (b as unknown as Record<symbol, () => ReturnType<typeof diagnostics>>)[Symbol.for('busbar.diagnostics')];
  if (typeof read !== 'function') throw new Error('the bus has no diagnostics');
  return read();
}

const remote = (error: unknown) => (BusbarError.is(error, 'BUSBAR_REMOTE') ? (error as RemoteError).remoteCode : error);

describe('idempotent responders', () => {
  it('run the handler once per request id: a repeated id gets BUSBAR_DUPLICATE, from any member of the group', async () => {
    const b = await bus();
    const store = new MemoryIdempotencyStore();
    const runs: string[] = [];
    const keys: (string | undefined)[] = [];
    for (let i = 0; i < 2; i++) {
      await b.respond<number, number>(
        'orders.reserve',
        (m, context) => {
          runs.push(m.id);
          keys.push(context.idempotencyKey);
          return m.payload * 2;
        },
        { group: 'stock', idempotency: { store } },
      );
    }
    expect(await b.request('orders.reserve', 21, { id: 'order-1' })).toBe(42);
    // The memory broker takes group members in turn: the retry goes to the other member, which shares the store.
    const again = await b.request('orders.reserve', 21, { id: 'order-1' }).catch((e: unknown) => e);
    expect(remote(again)).toBe('BUSBAR_DUPLICATE');
    expect((again as Error).message).toContain('was already answered');
    expect((again as BusbarError).retryable).toBe(false);
    expect(await b.request('orders.reserve', 5, { id: 'order-2' })).toBe(10);
    expect(runs).toEqual(['order-1', 'order-2']);
    expect(keys).toEqual(['stock:order-1', 'stock:order-2']);
  });

  it('a duplicate that arrives while the first is running is refused at once, not run beside it', async () => {
    const b = await bus();
    const store = new MemoryIdempotencyStore();
    let runs = 0;
    await b.respond(
      'slow.once',
      async () => {
        runs++;
        await new Promise((r) => setTimeout(r, 200));
        return 'done';
      },
      { group: 'g', concurrency: 4, idempotency: { store } },
    );
    const [first, second] = await Promise.all([
      b.request('slow.once', 1, { id: 'same' }).catch((e: unknown) => e),
      b.request('slow.once', 1, { id: 'same' }).catch((e: unknown) => e),
    ]);
    expect([first, remote(second)]).toEqual(['done', 'BUSBAR_DUPLICATE']);
    expect((second as Error).message).toContain('is being answered');
    expect(runs).toBe(1);
  });

  it('a handler that throws releases its claim (the caller may ask again); one that times out keeps it', async () => {
    const b = await bus();
    const store = new MemoryIdempotencyStore();
    let runs = 0;
    await b.respond<string, string>(
      'flaky.once',
      async (m) => {
        runs++;
        if (m.payload === 'fail' && runs === 1) throw new Error('out of stock');
        if (m.payload === 'hang') await new Promise((r) => setTimeout(r, 500));
        return 'ok';
      },
      { group: 'g', handlerTimeoutMs: 100, idempotency: { store, leaseMs: 60_000 } },
    );
    expect(remote(await b.request('flaky.once', 'fail', { id: 'a' }).catch((e: unknown) => e))).toBe('Error');
    expect(await b.request('flaky.once', 'fail', { id: 'a' })).toBe('ok');
    expect(runs).toBe(2);
    const timedOut = await b.request('flaky.once', 'hang', { id: 'b' }).catch((e: unknown) => e);
    expect(remote(timedOut)).toBe('BUSBAR_HANDLER_TIMEOUT');
    // The timed-out handler may still be running: its claim holds until the lease lapses.
    expect(remote(await b.request('flaky.once', 'hang', { id: 'b' }).catch((e: unknown) => e))).toBe(
      'BUSBAR_DUPLICATE',
    );
    expect(runs).toBe(3);
  });

  it('a failing store fails the request typed without running the handler or showing the store error', async () => {
    const b = await bus();
    let runs = 0;
    const broken: IdempotencyStore = {
      claim: async (): Promise<ClaimResult> => {
        throw new Error('connect ECONNREFUSED redis://:hunter2@cache');
      },
      complete: async () => undefined,
      release: async () => undefined,
    };
    await b.respond(
      'store.down',
      () => {
        runs++;
        return 1;
      },
      { group: 'g', idempotency: { store: broken } },
    );
    const failed = await b.request('store.down', 1).catch((e: unknown) => e);
    expect(remote(failed)).toBe('BUSBAR_CONNECTION');
    expect((failed as Error).message).not.toContain('hunter2');
    expect(runs).toBe(0);
    expect(diagnostics(b)).toMatchObject({ pendingRequests: 0, servingRequests: 0 });
  });

  it('needs a group, like idempotent subscriptions', async () => {
    const b = await bus();
    const store = new MemoryIdempotencyStore();
    const error = await b.respond('no.group', () => 1, { idempotency: { store } }).catch((e: unknown) => e);
    expect(BusbarError.is(error, 'BUSBAR_CONFIG')).toBe(true);
    expect((error as Error).message).toContain('idempotent responders need a group');
  });

  it('a request id that is not a usable id is a ConfigError, nothing sent', async () => {
    const b = await bus();
    let runs = 0;
    await b.respond('bad.id', () => ++runs, { group: 'g' });
    const error = await b.request('bad.id', 1, { id: 'has space' }).catch((e: unknown) => e);
    expect(BusbarError.is(error, 'BUSBAR_CONFIG')).toBe(true);
    expect(runs).toBe(0);
  });

  it('without idempotency a repeated id runs the handler again', async () => {
    const b = await bus();
    let runs = 0;
    await b.respond('plain.rr', () => ++runs, { group: 'g' });
    expect(await b.request('plain.rr', 0, { id: 'x' })).toBe(1);
    expect(await b.request('plain.rr', 0, { id: 'x' })).toBe(2);
  });
});

describe('requests are never retried or dead-lettered', () => {
  it('a responder that throws runs once and leaves no dead letter', async () => {
    const b = await bus();
    let runs = 0;
    await b.respond(
      'rr.throws',
      () => {
        runs++;
        throw new Error('no');
      },
      { group: 'g' },
    );
    expect(remote(await b.request('rr.throws', 1).catch((e: unknown) => e))).toBe('Error');
    await new Promise((r) => setTimeout(r, 300));
    expect(runs).toBe(1);
    expect(await b.peekDeadLetters('rr.throws', 'g', { idleMs: 100 })).toEqual([]);
  });
});

describe('per-request state', () => {
  it('none is left once every request settled, answered or timed out', async () => {
    const b = await bus();
    await b.respond('rr.echo', (m) => m.payload, { concurrency: 10 });
    await b.respond('rr.hang', () => new Promise(() => undefined), { handlerTimeoutMs: 60_000 });
    const replies = await Promise.all(Array.from({ length: 500 }, (_, n) => b.request('rr.echo', n)));
    expect(replies).toHaveLength(500);
    const hung = Array.from({ length: 5 }, () => b.request('rr.hang', 1, { timeoutMs: 50 }).catch((e: unknown) => e));
    expect(diagnostics(b).pendingRequests).toBe(5);
    for (const error of await Promise.all(hung)) expect(BusbarError.is(error, 'BUSBAR_TIMEOUT')).toBe(true);
    expect(diagnostics(b)).toMatchObject({ pendingRequests: 0, responders: 2 });
  });
});

describe('responder handler timeout', () => {
  it('an async handler past handlerTimeoutMs fails its request (signal aborted), and the others are answered', async () => {
    const b = await bus();
    const aborted: unknown[] = [];
    await b.respond<number, number>(
      'rr.slow',
      async (m, ctx) => {
        if (m.payload < 0) {
          ctx.signal.addEventListener('abort', () => aborted.push(ctx.signal.reason));
          await new Promise(() => undefined);
        }
        await new Promise((resolve) => setTimeout(resolve, m.payload));
        return m.payload;
      },
      { handlerTimeoutMs: 150, concurrency: 10 },
    );
    const started = Date.now();
    const [hung, fast, slower] = await Promise.all([
      b.request('rr.slow', -1, { timeoutMs: 5_000 }).catch((e: unknown) => e),
      b.request('rr.slow', 10),
      b.request('rr.slow', 60),
    ]);
    expect(remote(hung)).toBe('BUSBAR_HANDLER_TIMEOUT');
    expect(Date.now() - started).toBeGreaterThanOrEqual(150);
    expect([fast, slower]).toEqual([10, 60]);
    expect(aborted).toHaveLength(1);
    expect(BusbarError.is(aborted[0], 'BUSBAR_HANDLER_TIMEOUT')).toBe(true);
    // Afterwards: a fresh request on the same responder is answered.
    expect(await b.request('rr.slow', 1)).toBe(1);
  });
});

describe('a driver that misbehaves on the request path', () => {
  /** A transport whose request() throws synchronously and whose requests' reply() throws or returns no promise. */
  function oddDriver(onRequest: { deliver?: (request: IncomingRequest) => void }) {
    return defineDriver({
      name: 'odd',
      schemes: ['odd'],
      options: z.object({}),
      create: () => ({
        capabilities: { durableGroups: true, ordering: true, wildcards: false } satisfies Capabilities,
        maxPayloadBytes: 1_000_000,
        connect: async () => undefined,
        publish: async () => undefined,
        subscribe: async () => ({ stop: async () => undefined, close: async () => undefined }),
        declareGroup: async () => undefined,
        close: async () => undefined,
        requestReply: {
          request: () => {
            throw new Error('driver bug');
          },
          respond: async (_spec, callbacks) => {
            onRequest.deliver = callbacks.onRequest;
            return { stop: async () => undefined, close: async () => undefined };
          },
        },
      }),
    });
  }

  it('a request() that throws rejects the call and leaves nothing pending; a reply() that throws or returns no promise frees its slot', async () => {
    const hook: { deliver?: (request: IncomingRequest) => void } = {};
    const b = await connect({ url: 'odd://x', driver: oddDriver(hook), logger: silentLogger });
    open.push(b);
    const error = await b.request('rr.odd', 1).catch((e: unknown) => e);
    expect((error as Error).message).toBe('driver bug');
    expect(diagnostics(b).pendingRequests).toBe(0);

    await b.respond('rr.odd', (m) => m.payload, { concurrency: 1 });
    const replies: string[] = [];
    const request = (n: number, reply: () => Promise<void>): IncomingRequest => ({
      id: `r${n}`,
      topic: 'rr.odd',
      headers: {},
      body: new TextEncoder().encode(String(n)),
      contentType: 'application/json',
      timestamp: Date.now(),
      raw: undefined,
      reply: (r) => {
        replies.push(new TextDecoder().decode(r.body));
        return reply();
      },
    });
    const deliver = hook.deliver as (request: IncomingRequest) => void;
    deliver(
      request(1, () => {
        throw new Error('reply bug');
      }),
    );
    deliver(request(2, () => undefined as unknown as Promise<void>));
    deliver(request(3, () => Promise.resolve()));
    // Concurrency 1: the third is answered only if the first two each gave their slot back.
    await vi.waitFor(() => expect(replies).toEqual(['1', '2', '3']));
    await vi.waitFor(() => expect(diagnostics(b).servingRequests).toBe(0));
  });
});
