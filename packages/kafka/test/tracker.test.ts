import { describe, expect, it } from 'vitest';
import { PartitionTracker } from '../src/tracker.js';

describe('PartitionTracker', () => {
  it('commits only up to the first unsettled offset when settled out of order', () => {
    const t = new PartitionTracker('t', 0);
    const [a, b, c, d] = [10, 11, 12, 13].map((o) => t.add(o)) as [
      ReturnType<PartitionTracker['add']>,
      ...ReturnType<PartitionTracker['add']>[],
    ];
    expect(t.dirty()).toBe(10);
    t.committed(10);
    expect(t.dirty()).toBeUndefined();
    (c as { done: boolean }).done = true;
    expect(t.advance()).toBe(false);
    expect(t.dirty()).toBeUndefined();
    a.done = true;
    expect(t.advance()).toBe(true);
    expect(t.dirty()).toBe(11);
    (b as { done: boolean }).done = true;
    t.advance();
    expect(t.dirty()).toBe(13);
    expect(t.pending).toBe(1);
    (d as { done: boolean }).done = true;
    t.advance();
    expect(t.dirty()).toBe(14);
    expect(t.pending).toBe(0);
    expect(t.fetchNext).toBe(14);
  });

  it('never commits past a released message', () => {
    const t = new PartitionTracker('t', 1);
    const a = t.add(0);
    const b = t.add(1);
    const c = t.add(2);
    a.done = true;
    b.released = true;
    c.done = true;
    t.advance();
    expect(t.dirty()).toBe(1);
  });

  it('rewind forgets the released message and everything after it', () => {
    const t = new PartitionTracker('t', 2);
    const a = t.add(5);
    const b = t.add(6);
    const c = t.add(7);
    t.rewind(b);
    expect(t.fetchNext).toBe(6);
    // A late settlement of a forgotten entry does not move the commit.
    c.done = true;
    t.advance();
    expect(t.dirty()).toBe(5);
    a.done = true;
    t.advance();
    expect(t.dirty()).toBe(6);
    const again = t.add(6);
    again.done = true;
    t.advance();
    expect(t.dirty()).toBe(7);
  });

  it('stays correct over many entries (compaction)', () => {
    const t = new PartitionTracker('t', 3);
    const entries = Array.from({ length: 5_000 }, (_, i) => t.add(i));
    for (let i = 0; i < 4_000; i++) (entries[i] as { done: boolean }).done = true;
    t.advance();
    expect(t.dirty()).toBe(4_000);
    expect(t.pending).toBe(1_000);
    for (let i = 4_000; i < 5_000; i++) (entries[i] as { done: boolean }).done = true;
    t.advance();
    expect(t.dirty()).toBe(5_000);
  });

  it('behind a message held unsettled, keeps the last of each run of settled ones and commits as before', () => {
    const t = new PartitionTracker('t', 4);
    // Offsets with gaps (compacted topics, transaction markers): the commit must name the real next offset.
    const held = t.add(0);
    const handled = (offset: number) => {
      t.add(offset).done = true;
      t.advance();
    };
    for (let i = 0; i < 30_000; i++) handled(2 * i + 2);
    const released = t.add(70_000);
    for (let i = 0; i < 30_000; i++) handled(70_002 + 2 * i);
    expect(t.pending).toBeLessThan(5_000);
    expect(t.dirty()).toBe(0);
    held.done = true;
    t.advance();
    // Past the first run, up to the message that was released (never committed past).
    released.released = true;
    t.advance();
    expect(t.dirty()).toBe(60_001);
    expect(t.fetchNext).toBe(130_001);
  });
});
