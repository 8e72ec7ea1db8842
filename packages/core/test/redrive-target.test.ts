import { connect, deadLetterTopic, type Message, silentLogger } from '@busbar/core';
import { DEAD_LETTER_READER_GROUP } from '@busbar/core/transport';
import { uniqueName, waitFor } from '@busbar/testing';
import { describe, expect, it } from 'vitest';
import { memoryBroker } from '../src/memory/broker.js';

/** A dead letter written straight into `topic`/`group`'s dead-letter queue, naming `claims` as its topic. */
function letter(
  broker: ReturnType<typeof memoryBroker>,
  topic: string,
  group: string,
  id: string,
  claims: string,
  extra: Record<string, string> = {},
) {
  broker.publish({
    topic: deadLetterTopic(topic, group),
    id,
    key: undefined,
    headers: { 'busbar-dl-topic': claims, 'busbar-dl-error-name': 'Error', 'busbar-dl-attempts': '1', ...extra },
    body: new TextEncoder().encode(JSON.stringify({ id })),
    contentType: 'application/json',
    timestamp: Date.now(),
  });
}

describe('a re-drive sends a dead letter only where the re-drive covers', () => {
  it('its own topic, or one its pattern matches; a letter naming any other topic stays dead', async () => {
    const name = uniqueName('target');
    const bus = await connect({ url: `memory://${name}`, logger: silentLogger });
    const broker = memoryBroker(name);
    try {
      for (const topic of ['orders.created', 'orders.*'])
        broker.queue(deadLetterTopic(topic, 'g'), DEAD_LETTER_READER_GROUP);
      const got = new Map<string, Message<unknown>[]>();
      for (const topic of ['orders.created', 'orders.paid', 'payments.charge']) {
        const list: Message<unknown>[] = [];
        got.set(topic, list);
        await bus.subscribe(topic, (m) => void list.push(m), { group: 'g' });
      }
      letter(broker, 'orders.created', 'g', 'own', 'orders.created');
      letter(broker, 'orders.created', 'g', 'elsewhere', 'payments.charge');
      letter(broker, 'orders.*', 'g', 'matched', 'orders.paid');
      letter(broker, 'orders.*', 'g', 'outside', 'payments.charge');

      expect(await bus.redrive('orders.created', 'g', { idleMs: 100 })).toBe(1);
      expect(await bus.redrive('orders.*', 'g', { idleMs: 100 })).toBe(1);
      await waitFor(
        () => (got.get('orders.created')?.length ?? 0) + (got.get('orders.paid')?.length ?? 0) === 2,
        3_000,
        'two re-driven',
      );
      expect(got.get('orders.created')?.map((m) => m.id)).toEqual(['own']);
      expect(got.get('orders.paid')?.map((m) => m.id)).toEqual(['matched']);
      await new Promise((resolve) => setTimeout(resolve, 100));
      expect(got.get('payments.charge')).toEqual([]);
      // Still dead, where they were.
      expect((await bus.peekDeadLetters('orders.created', 'g', { idleMs: 100 })).map((m) => m.id)).toEqual([
        'elsewhere',
      ]);
      expect((await bus.peekDeadLetters('orders.*', 'g', { idleMs: 100 })).map((m) => m.id)).toEqual(['outside']);
    } finally {
      await bus.close();
    }
  });
});

describe('a dead letter stamped by a clock that runs ahead', () => {
  it('is re-driven (it was held as "failed since the walk began" for good), and one that fails again is not looped', async () => {
    const name = uniqueName('skew');
    const bus = await connect({ url: `memory://${name}`, logger: silentLogger });
    const broker = memoryBroker(name);
    try {
      const topic = 'orders.skewed';
      broker.queue(deadLetterTopic(topic, 'g'), DEAD_LETTER_READER_GROUP);
      const ahead = String(Date.now() + 10 * 60_000);
      const failedAt = { 'busbar-dl-first-failure': ahead, 'busbar-dl-last-failure': ahead };
      for (const id of ['fixed', 'still-broken']) letter(broker, topic, 'g', id, topic, failedAt);
      const handled: string[] = [];
      await bus.subscribe(
        topic,
        (m) => {
          handled.push(m.id);
          if (m.id === 'still-broken') throw new Error('still broken');
        },
        { group: 'g', retry: false },
      );
      expect(await bus.redrive(topic, 'g', { idleMs: 300 })).toBe(2);
      await waitFor(() => handled.length === 2, 3_000, 'both re-driven');
      // The one that failed again is dead again, and was not re-driven a second time by the same call.
      await waitFor(
        async () => (await bus.peekDeadLetters(topic, 'g', { idleMs: 100 })).length === 1,
        3_000,
        'the one that failed again, dead again',
      );
      expect(handled.sort()).toEqual(['fixed', 'still-broken']);
    } finally {
      await bus.close();
    }
  });
});
