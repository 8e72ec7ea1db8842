import { BusbarError, connect, defineTopic, type Message, silentLogger } from '@busbar/core';
import * as v from 'valibot';
import { describe, expect, it } from 'vitest';

/**
 * busbar takes any Standard Schema library, not only zod (the examples' choice): valibot here, end to end on
 * memory://, with pipes of checks, async validation, and the
 * typed failures the README promises.
 */
const Shipment = v.object({
  orderId: v.pipe(v.string(), v.minLength(1)),
  // Publish is typed by the schema's output type, so a transform that changes the type (string -> Date) does
  // not type-check at publish yet: this schema keeps input and output alike.
  shippedAt: v.pipe(v.string(), v.isoTimestamp()),
});
const Quote = v.object({ total: v.pipe(v.number(), v.minValue(0)) });

function deferred<T>(): { promise: Promise<T>; resolve: (value: T) => void } {
  let resolve: (value: T) => void = () => {};
  const promise = new Promise<T>((r) => {
    resolve = r;
  });
  return { promise, resolve };
}

describe('a Standard Schema library other than zod (valibot)', () => {
  it('validates at publish, hands the handler the typed output, and the bus works afterwards', async () => {
    await using bus = await connect({ url: 'memory://valibot', logger: silentLogger });
    const shipped = defineTopic('valibot.shipped', Shipment);
    const got = deferred<Message<v.InferOutput<typeof Shipment>>>();
    await bus.subscribe(shipped, (message) => got.resolve(message), { group: 'g' });

    const refused = await bus.publish(shipped, { orderId: '', shippedAt: 'yesterday' }).then(
      () => undefined,
      (error: unknown) => error,
    );
    expect(BusbarError.is(refused, 'BUSBAR_VALIDATION')).toBe(true);
    expect((refused as { issues: readonly { path?: readonly unknown[] }[] }).issues.map((i) => i.path)).toEqual([
      ['orderId'],
      ['shippedAt'],
    ]);
    expect((refused as BusbarError).retryable).toBe(false);

    await bus.publish(shipped, { orderId: 'o-1', shippedAt: '2026-12-06T10:00:00.000Z' });
    const message = await got.promise;
    expect(message.payload).toEqual({ orderId: 'o-1', shippedAt: '2026-12-06T10:00:00.000Z' });
  });

  it('dead-letters a received message that fails the schema, without retries', async () => {
    await using bus = await connect({ url: 'memory://valibot-dl', logger: silentLogger });
    const loose = defineTopic<unknown>('valibot.quotes');
    const strict = defineTopic('valibot.quotes', Quote);
    await bus.subscribe(strict, () => {}, { group: 'g' });
    await bus.publish(loose, { total: -1 });
    const dead = deferred<Message<unknown>>();
    await bus.subscribeDeadLetters(strict, 'g', (message) => dead.resolve(message));
    const letter = await dead.promise;
    expect(letter.deadLetter?.errorName).toBe('ValidationError');
    expect(letter.deadLetter?.errorMessage).toMatch(/total/);
    // 0: the handler never ran (a schema failure skips the retries).
    expect(letter.deadLetter?.attempts).toBe(0);
  });

  it('types and validates request/reply both ways with async validation', async () => {
    await using bus = await connect({ url: 'memory://valibot-rr', logger: silentLogger });
    const Cart = v.objectAsync({
      items: v.pipeAsync(
        v.array(v.string()),
        v.checkAsync(async (items) => items.length > 0, 'a cart has items'),
      ),
    });
    const price = defineTopic('valibot.price', Cart, { response: Quote });
    await bus.respond(price, async (message) => ({ total: message.payload.items.length * 10 }));
    await expect(bus.request(price, { items: ['a', 'b'] }, { timeoutMs: 2_000 })).resolves.toEqual({ total: 20 });
    const empty = await bus.request(price, { items: [] }, { timeoutMs: 2_000 }).catch((error: unknown) => error);
    expect(BusbarError.is(empty, 'BUSBAR_VALIDATION')).toBe(true);

    const negative = defineTopic('valibot.negative', v.object({ n: v.number() }), { response: Quote });
    await bus.respond(negative, async (message) => ({ total: -message.payload.n }));
    const bad = await bus.request(negative, { n: 5 }, { timeoutMs: 2_000 }).catch((error: unknown) => error);
    expect(BusbarError.is(bad)).toBe(true);
    await expect(bus.request(price, { items: ['c'] }, { timeoutMs: 2_000 })).resolves.toEqual({ total: 10 });
  });
});
