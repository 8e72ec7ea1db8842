import { BusbarError, type Message } from '@busbar/core';
import { expect, it } from 'vitest';
import { recorder, type Suite } from './context.js';

const DELAY = 1_500;

/**
 * `publish(topic, payload, { delayMs })`: the broker has the message at once, busbar consumers handle it no
 * earlier than the delay (through their group's retry path, on every transport), and nothing else waits for it.
 */
export function delayTests(s: Suite): void {
  it('a delayed message reaches group and broadcast handlers after its delay, without holding others back', async () => {
    const bus = await s.bus();
    const topic = s.topic('delay');
    const grouped = recorder<string>();
    const broadcast = recorder<string>();
    const arrived = new Map<string, number>();
    const track =
      (r: { handler: (m: Message<string>) => Promise<void> }, label: string) => async (m: Message<string>) => {
        arrived.set(`${label}:${m.payload}`, Date.now());
        await r.handler(m);
      };
    await bus.subscribe(topic, track(grouped, 'g'), { group: s.group() });
    await bus.subscribe(topic, track(broadcast, 'b'));
    await s.settle();
    const sentAt = Date.now();
    await bus.publish(topic, 'later', { delayMs: DELAY, headers: { tenant: 'acme' }, key: 'k' });
    await bus.publish(topic, 'now', { key: 'k' });
    await s.waitFor(
      () => grouped.messages.length === 2 && broadcast.messages.length === 2,
      DELAY + 20_000,
      'both messages in both subscriptions',
    );
    for (const r of [grouped, broadcast]) {
      expect(r.messages.map((m) => m.payload)).toEqual(['now', 'later']);
      const later = r.messages[1] as Message<string>;
      expect(later.attempt).toBe(1);
      expect(later.headers).toEqual({ tenant: 'acme' });
      expect(later.key).toBe('k');
    }
    for (const label of ['g', 'b']) {
      expect(arrived.get(`${label}:later`) as number).toBeGreaterThanOrEqual(sentAt + DELAY);
      expect(arrived.get(`${label}:now`) as number).toBeLessThan(sentAt + DELAY);
    }
  });

  it('many short delays: none is handed to a handler before its due time', async () => {
    // Timers may fire a millisecond early by Date.now(), and brokers round delays: the due time must still hold.
    const bus = await s.bus();
    const topic = s.topic('delayshort');
    const due = new Map<number, number>();
    const early: string[] = [];
    let handled = 0;
    const check = (label: string) => (m: Message<number>) => {
      const at = Date.now();
      const dueAt = due.get(m.payload) as number;
      if (at < dueAt) early.push(`${label} #${m.payload} ${dueAt - at} ms early`);
      handled++;
    };
    // A group waits through the broker's retry path, a broadcast subscription in process: both must hold.
    await bus.subscribe<number>(topic, check('group'), { group: s.group(), concurrency: 8 });
    await bus.subscribe<number>(topic, check('broadcast'), { concurrency: 8 });
    await s.settle();
    const count = 40;
    await Promise.all(
      Array.from({ length: count }, (_, n) => {
        const delayMs = 30 + (n % 11) * 7;
        due.set(n, Date.now() + delayMs);
        return bus.publish(topic, n, { delayMs, key: `k${n % 4}` });
      }),
    );
    await s.waitFor(() => handled >= 2 * count, 30_000, 'every delayed message, in both subscriptions');
    expect(early).toEqual([]);
  });

  it('delayMs 0 is no delay; a delayed message is not handled twice', async () => {
    const bus = await s.bus();
    const topic = s.topic('delay0');
    const got = recorder<number>();
    await bus.subscribe(topic, got.handler, { group: s.group() });
    await s.settle();
    await bus.publish(topic, 1, { delayMs: 0 });
    await bus.publishBatch(topic, [{ payload: 2, delayMs: 300 }]);
    await s.waitFor(() => got.messages.length >= 2, 20_000, 'both messages');
    await new Promise((r) => setTimeout(r, 800));
    // Sorted: without a key, Kafka puts them on different partitions.
    expect(got.messages.map((m) => m.payload).sort()).toEqual([1, 2]);
    expect(got.messages.every((m) => m.attempt === 1)).toBe(true);
  });

  it('an invalid delayMs is a ConfigError, nothing is sent, and the bus works afterwards', async () => {
    const bus = await s.bus();
    const topic = s.topic('delaybad');
    const got = recorder<number>();
    await bus.subscribe(topic, got.handler, { group: s.group() });
    await s.settle();
    for (const delayMs of [-1, Number.NaN, Number.POSITIVE_INFINITY, 2 ** 31, '10', null]) {
      const error = await bus.publish(topic, 0, { delayMs: delayMs as number }).catch((e: unknown) => e);
      expect(BusbarError.is(error, 'BUSBAR_CONFIG'), String(delayMs)).toBe(true);
      expect((error as BusbarError).retryable).toBe(false);
    }
    await bus.publish(topic, 7);
    await s.waitFor(() => got.messages.length >= 1, 20_000, 'the valid message');
    await new Promise((r) => setTimeout(r, 200));
    expect(got.messages.map((m) => m.payload)).toEqual([7]);
  });
}
