import { BusbarError, type Message } from '@busbar/core';
import { expect, it } from 'vitest';
import { recorder, type Suite } from './context.js';

/** Today's JavaScript conventions on every transport: `await using`, AbortSignal, `for await` consumption. */
export function conventionTests(s: Suite): void {
  it('await using closes the bus and the subscription at the end of the scope', async () => {
    const topic = s.topic('using');
    let sub: { readonly closed: boolean } | undefined;
    {
      await using bus = await s.options.connect();
      await using subscription = await bus.subscribe(topic, () => undefined, { group: s.group() });
      sub = subscription;
      expect(subscription.closed).toBe(false);
    }
    expect(sub?.closed).toBe(true);
  });

  it('an aborted publish sends nothing and rejects with BUSBAR_ABORTED', async () => {
    const bus = await s.bus();
    const topic = s.topic('abort');
    const got = recorder<number>();
    await bus.subscribe(topic, got.handler, { group: s.group() });
    await s.settle();
    const controller = new AbortController();
    controller.abort(new Error('user cancelled'));
    const error = await bus.publish(topic, 1, { signal: controller.signal }).catch((e: unknown) => e);
    expect(BusbarError.is(error, 'BUSBAR_ABORTED')).toBe(true);
    await bus.publish(topic, 2);
    await s.waitFor(() => got.messages.length >= 1, 20_000, 'the second message');
    await new Promise((r) => setTimeout(r, 200));
    expect(got.messages.map((m) => m.payload)).toEqual([2]);
  });

  it("aborting a subscription's signal closes it", async () => {
    const bus = await s.bus();
    const controller = new AbortController();
    const sub = await bus.subscribe(s.topic('abortsub'), () => undefined, {
      group: s.group(),
      signal: controller.signal,
    });
    controller.abort();
    await s.waitFor(() => sub.closed, 10_000, 'the subscription to close');
  });

  it('for await consumes in order, acks each after its body, and break releases the rest to the group', async () => {
    const bus = await s.bus();
    const topic = s.topic('iter');
    const group = s.group();
    // The group exists before the stream joins it. A new group starts at its join, and a stream joins at its
    // first next(), which nothing here can await: on a fresh Kafka broker the join took longer than a fixed
    // pause, the batch went before the group's start offsets, and the first next() waited forever.
    await (await bus.subscribe(topic, () => undefined, { group })).close();
    const stream = bus.consume<number>(topic, { group });
    const first = stream.next();
    await bus.publishBatch(
      topic,
      Array.from({ length: 10 }, (_, n) => ({ payload: n, key: 'one-key' })),
    );
    const seen: number[] = [];
    const head = await first;
    seen.push(head.value?.payload as number);
    for await (const message of stream) {
      seen.push(message.payload);
      if (seen.length === 4) break;
    }
    expect(seen).toEqual([0, 1, 2, 3]);
    // The 4th was in hand at `break` and the rest were not taken: all released to the group, none lost.
    const rest = recorder<number>();
    const other = await s.bus();
    await other.subscribe(topic, rest.handler as (m: Message<number>) => Promise<void>, { group });
    await s.waitFor(() => new Set(rest.messages.map((m) => m.payload)).size >= 7, 30_000, 'the released rest');
    expect([...new Set(rest.messages.map((m) => m.payload))].sort((a, b) => a - b)).toEqual([3, 4, 5, 6, 7, 8, 9]);
    // Two group joins and a hand-over (a Kafka rebalance each): its waits, not vitest's default 30 s, bound it.
  }, 90_000);
}
