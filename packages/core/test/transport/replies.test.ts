import { BusbarError } from '@busbar/core';
import { PendingReplies, type ReplyRecord } from '@busbar/core/transport';
import { describe, expect, it } from 'vitest';

const reply: ReplyRecord = { body: new Uint8Array([1]), contentType: undefined, headers: {} };
const code = (p: Promise<unknown>) =>
  p.then(
    () => 'resolved',
    (e: unknown) => (BusbarError.is(e) ? e.code : String(e)),
  );

describe('PendingReplies', () => {
  it('settles once with the reply, and a late reply finds nothing', async () => {
    const table = new PendingReplies<{ subject: string }>('Test');
    let sent = 0;
    const waiting = table.open('a', 't', { timeoutMs: 1_000 }, { subject: 's' }, () => {
      sent++;
    });
    expect(sent).toBe(1);
    expect(table.meta('a')).toEqual({ subject: 's' });
    expect(table.resolve('a', reply)).toBe(true);
    await expect(waiting).resolves.toBe(reply);
    expect(table.resolve('a', reply)).toBe(false);
    expect(table.reject('a', new Error('x'))).toBe(false);
    expect(table.size).toBe(0);
  });

  it('times out as a TimeoutError that is not retryable, leaving nothing behind', async () => {
    const table = new PendingReplies('Test');
    const error = await table.open('a', 't', { timeoutMs: 20 }, undefined, () => undefined).catch((e: unknown) => e);
    expect(BusbarError.is(error, 'BUSBAR_TIMEOUT')).toBe(true);
    expect((error as BusbarError).retryable).toBe(false);
    expect(table.size).toBe(0);
  });

  it('aborts one request by its signal, and refuses one whose signal fired already', async () => {
    const table = new PendingReplies('Test');
    const controller = new AbortController();
    const waiting = code(
      table.open('a', 't', { timeoutMs: 5_000, signal: controller.signal }, undefined, () => undefined),
    );
    const other = table.open('b', 't', { timeoutMs: 5_000 }, undefined, () => undefined);
    controller.abort();
    expect(await waiting).toBe('BUSBAR_ABORTED');
    expect(
      await code(table.open('c', 't', { timeoutMs: 5_000, signal: controller.signal }, undefined, () => undefined)),
    ).toBe('BUSBAR_ABORTED');
    expect(table.size).toBe(1);
    table.resolve('b', reply);
    await other;
  });

  it('fails a request whose send throws or rejects, mapped by toError', async () => {
    const table = new PendingReplies('Test');
    const thrown = table.open('a', 't', { timeoutMs: 5_000 }, undefined, () => {
      throw new Error('sync');
    });
    await expect(thrown).rejects.toThrow('sync');
    const mapped = table.open(
      'b',
      't',
      { timeoutMs: 5_000 },
      undefined,
      () => Promise.reject(new Error('async')),
      (e) => new Error(`mapped: ${(e as Error).message}`),
    );
    await expect(mapped).rejects.toThrow('mapped: async');
    expect(table.size).toBe(0);
  });

  it('rejects selected or all requests, and close refuses new ones with ClosedError', async () => {
    const table = new PendingReplies<string>('Test');
    const a = code(table.open('a', 'one', { timeoutMs: 5_000 }, 'x', () => undefined));
    const b = code(table.open('b', 'two', { timeoutMs: 5_000 }, 'y', () => undefined));
    table.rejectAll(new BusbarError('BUSBAR_CONNECTION', 'lost'), (meta) => meta === 'x');
    expect(await a).toBe('BUSBAR_CONNECTION');
    expect(table.size).toBe(1);
    table.close();
    expect(await b).toBe('BUSBAR_CLOSED');
    expect(table.closed).toBe(true);
    expect(await code(table.open('c', 't', { timeoutMs: 5_000 }, 'z', () => undefined))).toBe('BUSBAR_CLOSED');
    expect(table.size).toBe(0);
  });

  it('one timer per timeout value, not per request; none once every request settled, in any order', async () => {
    const table = new PendingReplies('Test');
    const waiting = Array.from({ length: 100 }, (_, n) =>
      table.open(String(n), 't', { timeoutMs: 5_000 }, undefined, () => undefined),
    );
    const other = table.open('x', 't', { timeoutMs: 7_000 }, undefined, () => undefined);
    expect(table.timers).toBe(2);
    // Out of order: the later ones first, then the front.
    for (let n = 99; n >= 0; n--) table.resolve(String(n), reply);
    expect(table.timers).toBe(1);
    table.resolve('x', reply);
    await Promise.all([...waiting, other]);
    expect(table.timers).toBe(0);
    expect(table.size).toBe(0);
  });

  it('a request behind settled ones still times out on time, and not before; a longer timeout waits on', async () => {
    const table = new PendingReplies('Test');
    const started = Date.now();
    const a = table.open('a', 't', { timeoutMs: 40 }, undefined, () => undefined);
    const b = code(table.open('b', 't', { timeoutMs: 40 }, undefined, () => undefined));
    const c = table.open('c', 't', { timeoutMs: 40 }, undefined, () => undefined);
    const long = code(table.open('long', 't', { timeoutMs: 400 }, undefined, () => undefined));
    table.resolve('a', reply);
    table.resolve('c', reply);
    await Promise.all([a, c]);
    expect(await b).toBe('BUSBAR_TIMEOUT');
    expect(Date.now() - started).toBeGreaterThanOrEqual(40);
    expect(table.size).toBe(1);
    expect(table.timers).toBe(1);
    table.resolve('long', reply);
    expect(await long).toBe('resolved');
    expect(table.timers).toBe(0);
  });

  it('close leaves no timer, whatever was pending', async () => {
    const table = new PendingReplies('Test');
    const pending = [5_000, 6_000, 2 ** 31 - 1].map((timeoutMs, n) =>
      code(table.open(String(n), 't', { timeoutMs }, undefined, () => undefined)),
    );
    expect(table.timers).toBe(3);
    table.close();
    expect(await Promise.all(pending)).toEqual(['BUSBAR_CLOSED', 'BUSBAR_CLOSED', 'BUSBAR_CLOSED']);
    expect(table.timers).toBe(0);
  });
});

describe('PendingReplies.nextId', () => {
  it('is unique within a table and across tables (tables may share a reply topic or queue)', () => {
    const a = new PendingReplies('Test');
    const b = new PendingReplies('Test');
    const ids = new Set<string>();
    for (let i = 0; i < 1_000; i++) {
      ids.add(a.nextId());
      ids.add(b.nextId());
    }
    expect(ids.size).toBe(2_000);
  });
});

describe('PendingReplies.open', () => {
  it('fails the request when send returns a thenable that rejects, not only a native promise', async () => {
    const table = new PendingReplies('Test');
    // A thenable that is not a native promise (a driver built on another promise library).
    const thenable: PromiseLike<never> = {
      // biome-ignore lint/suspicious/noThenProperty: the point of the test is an object with its own then
      then: (_, reject) => {
        reject?.(new Error('refused'));
        return thenable as never;
      },
    };
    await expect(table.open('a', 't', { timeoutMs: 1_000 }, undefined, () => thenable)).rejects.toThrow('refused');
    expect(table.size).toBe(0);
  });
});
