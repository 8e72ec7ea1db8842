import { AsyncLocalStorage } from 'node:async_hooks';
import { BusbarError, type ConsumeMiddleware, PermanentError } from '@busbar/core';
import { expect, it } from 'vitest';
import { recorder, type Suite } from './context.js';

/** Middleware on every transport: order, failures inside the retry decision, publish-side headers and refusals. */
export function middlewareTests(s: Suite): void {
  it('runs bus middleware (in registration order), then the subscription’s, around the handler', async () => {
    const bus = await s.bus();
    const topic = s.topic('mw-order');
    const log: string[] = [];
    const tag =
      (name: string): ConsumeMiddleware =>
      async (_m, _c, next) => {
        log.push(`${name}>`);
        await next();
        log.push(`<${name}`);
      };
    bus.use(tag('a')).use({ consume: tag('b') });
    await bus.subscribe(topic, () => void log.push('handler'), { group: s.group(), middleware: [tag('c')] });
    await s.settle();
    await bus.publish(topic, 1);
    await s.waitFor(() => log.length === 7, 20_000, 'the chain to run');
    expect(log).toEqual(['a>', 'b>', 'c>', 'handler', '<c', '<b', '<a']);
  });

  it('a middleware that throws fails the message like its handler: retried, or dead-lettered at once when permanent', async () => {
    const bus = await s.bus();
    const topic = s.topic('mw-fail');
    const group = s.group();
    const attempts: number[] = [];
    let handled = 0;
    await bus.subscribe(topic, () => void handled++, {
      group,
      retry: { maxAttempts: 2, initialDelayMs: 50, maxDelayMs: 50 },
      middleware: [
        (m, _c, next) => {
          attempts.push(m.attempt);
          if (m.headers.auth !== 'ok') throw new PermanentError('not authorised');
          if (m.attempt === 1) throw new Error('flaky');
          return next();
        },
      ],
    });
    const dead = recorder<unknown>();
    await bus.subscribeDeadLetters(topic, group, dead.handler);
    await s.settle();
    await bus.publish(topic, 'denied', { headers: { auth: 'no' } });
    await bus.publish(topic, 'allowed', { headers: { auth: 'ok' } });
    await s.waitFor(() => dead.messages.length >= 1 && handled >= 1, 30_000, 'one dead letter, one handled');
    expect(dead.messages[0]?.payload).toBe('denied');
    expect(dead.messages[0]?.deadLetter?.errorName).toBe('PermanentError');
    expect(handled).toBe(1);
    expect(attempts.filter((a) => a === 2)).toHaveLength(1);
  });

  it('a middleware that edits message.headers changes neither the retry nor the dead letter', async () => {
    const bus = await s.bus();
    const topic = s.topic('mw-edit');
    const group = s.group();
    const seen: Array<Record<string, string>> = [];
    await bus.subscribe(topic, (m) => void seen.push({ ...m.headers }), {
      group,
      retry: { maxAttempts: 2, initialDelayMs: 50, maxDelayMs: 50 },
      middleware: [
        async (m, _c, next) => {
          const headers = m.headers as Record<string, string>;
          delete headers.tenant;
          headers.authorization = 'Bearer injected';
          await next();
          throw new Error('fails after editing');
        },
      ],
    });
    const dead = recorder<unknown>();
    await bus.subscribeDeadLetters(topic, group, dead.handler);
    await s.settle();
    await bus.publish(topic, 'x', { headers: { tenant: 'acme' } });
    await s.waitFor(() => dead.messages.length >= 1, 30_000, 'the dead letter');
    // Each attempt starts from the message as published, and so does the dead letter.
    expect(seen).toEqual([{ authorization: 'Bearer injected' }, { authorization: 'Bearer injected' }]);
    expect(dead.messages[0]?.headers).toEqual({ tenant: 'acme' });
    expect(dead.messages[0]?.deadLetter?.attempts).toBe(2);
  });

  it('a dead-letter reader never drops a dead letter: a PermanentError from bus middleware or the reader retries it', async () => {
    const bus = await s.bus();
    const topic = s.topic('mw-dlread');
    const group = s.group();
    await bus.subscribe(
      topic,
      () => {
        throw new PermanentError('bad order');
      },
      { group },
    );
    // The README's auth check, registered after the failing subscription: only the dead-letter reader gets it.
    let denied = 0;
    bus.use((_m, _c, next) => {
      if (denied++ === 0) throw new PermanentError('forbidden');
      return next();
    });
    const read: Array<{ payload: unknown; attempt: number }> = [];
    await bus.subscribeDeadLetters(
      topic,
      group,
      (m) => {
        read.push({ payload: m.payload, attempt: m.attempt });
        if (read.length === 1) throw new PermanentError('not now');
      },
      { retry: { initialDelayMs: 50, maxDelayMs: 100 } },
    );
    await s.settle();
    await bus.publish(topic, 'kept', { headers: { tenant: 'acme' } });
    await s.waitFor(() => read.length >= 2, 30_000, 'the dead letter read again after two refusals');
    expect(read.map((r) => r.payload)).toEqual(['kept', 'kept']);
    expect(read[1]?.attempt).toBeGreaterThan(read[0]?.attempt ?? 0);
  });

  it('publish middleware adds headers; one that throws rejects the publish before anything is sent', async () => {
    const bus = await s.bus();
    const topic = s.topic('mw-pub');
    const got = recorder<number>();
    await bus.subscribe(topic, got.handler, { group: s.group() });
    await s.settle();
    bus.use({
      publish: (message) => {
        if (message.payload === 13) throw new Error('unlucky');
        message.headers['x-origin'] = 'orders';
      },
    });
    const error = await bus.publish(topic, 13).catch((e: unknown) => e);
    expect(BusbarError.is(error, 'BUSBAR_PUBLISH')).toBe(true);
    expect((error as BusbarError).retryable).toBe(false);
    await bus.publishBatch(topic, [{ payload: 1 }, { payload: 2, headers: { tenant: 'acme' } }]);
    await s.waitFor(() => got.messages.length >= 2, 20_000, 'two messages');
    await new Promise((r) => setTimeout(r, 200));
    expect(got.messages.map((m) => m.payload).sort()).toEqual([1, 2]);
    const byPayload = new Map(got.messages.map((m) => [m.payload, m.headers]));
    expect(byPayload.get(1)).toEqual({ 'x-origin': 'orders' });
    expect(byPayload.get(2)).toEqual({ tenant: 'acme', 'x-origin': 'orders' });
  });

  it('an AsyncLocalStorage context set by middleware is visible anywhere inside the handler', async () => {
    const bus = await s.bus();
    const topic = s.topic('mw-als');
    const tenant = new AsyncLocalStorage<string>();
    const seen: (string | undefined)[] = [];
    bus.use((m, _c, next) => tenant.run(m.headers.tenant ?? 'none', next));
    await bus.subscribe(
      topic,
      async () => {
        await new Promise((r) => setTimeout(r, 5));
        seen.push(tenant.getStore());
      },
      { group: s.group() },
    );
    await s.settle();
    await bus.publish(topic, 1, { headers: { tenant: 'acme' } });
    await s.waitFor(() => seen.length === 1, 20_000, 'the handler');
    expect(seen).toEqual(['acme']);
  });
}
