import { describe, expect, it, vi } from 'vitest';
import { TimeoutLane } from '../../src/transport/lane.js';

interface Item {
  readonly name: string;
  readonly deadline: number;
  settled: boolean;
}

function lane(timeoutMs: number) {
  const expired: string[] = [];
  let idle = 0;
  const l = new TimeoutLane<Item>(
    timeoutMs,
    (item) => expired.push(item.name),
    () => idle++,
  );
  const add = (name: string): Item => {
    const item = { name, deadline: l.deadline(), settled: false };
    l.add(item);
    return item;
  };
  const settle = (item: Item) => {
    item.settled = true;
    l.settled(item);
  };
  return { l, expired, idle: () => idle, add, settle };
}

describe('TimeoutLane', () => {
  it('times out the unsettled items, in order, no earlier than their deadline; then keeps no timer', async () => {
    const { l, expired, idle, add, settle } = lane(40);
    const started = Date.now();
    const a = add('a');
    add('b');
    const c = add('c');
    add('d');
    settle(a);
    settle(c);
    expect(l.armed).toBe(true);
    await new Promise((resolve) => setTimeout(resolve, 80));
    expect(expired).toEqual(['b', 'd']);
    expect(Date.now() - started).toBeGreaterThanOrEqual(40);
    expect(l.armed).toBe(false);
    expect(idle()).toBe(1);
  });

  it('settling every item, in any order, stops the timer at once', () => {
    const { l, add, settle, idle } = lane(60_000);
    const items = ['a', 'b', 'c'].map(add);
    settle(items[2] as Item);
    settle(items[1] as Item);
    expect(l.armed).toBe(true);
    settle(items[0] as Item);
    expect(l.armed).toBe(false);
    expect(idle()).toBe(1);
  });

  it('a callback that throws does not leave the rest of the lane without a timeout', () => {
    vi.useFakeTimers();
    try {
      const expired: string[] = [];
      const l = new TimeoutLane<Item>(50, (item) => {
        expired.push(item.name);
        if (item.name === 'a') throw new Error('callback failed');
      });
      l.add({ name: 'a', deadline: l.deadline(), settled: false });
      vi.advanceTimersByTime(10);
      l.add({ name: 'b', deadline: l.deadline(), settled: false });
      expect(() => vi.advanceTimersByTime(45)).toThrow('callback failed');
      expect(l.armed).toBe(true);
      vi.advanceTimersByTime(20);
      expect(expired).toEqual(['a', 'b']);
      expect(l.armed).toBe(false);
    } finally {
      vi.useRealTimers();
    }
  });

  it('a timeout at the longest timer Node allows arms a timer, not one that fires at once', async () => {
    const { l, expired, add } = lane(2 ** 31 - 1);
    add('a');
    await new Promise((resolve) => setTimeout(resolve, 20));
    expect(expired).toEqual([]);
    expect(l.armed).toBe(true);
    l.clear();
    expect(l.armed).toBe(false);
  });
});
