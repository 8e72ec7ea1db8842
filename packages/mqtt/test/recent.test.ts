import { describe, expect, it } from 'vitest';
import { RecentKeys } from '../src/recent.js';
import { seenKey } from '../src/requests.js';

describe("RecentKeys (the responder's memory of served requests)", () => {
  it('answers false for a key it has, true for a new one', () => {
    const recent = new RecentKeys(3);
    expect(recent.add('a')).toBe(true);
    expect(recent.add('a')).toBe(false);
    expect(recent.add('b')).toBe(true);
    expect(recent.add('b')).toBe(false);
  });

  it('always remembers the last `limit` keys, and forgets the oldest once it holds twice that', () => {
    const limit = 1_000;
    const recent = new RecentKeys(limit);
    for (let i = 0; i < 10 * limit; i++) {
      expect(recent.add(`k${i}`)).toBe(true);
      // Each of the last `limit` keys is still known (checked on a sample, for speed).
      if (i % 97 === 0)
        for (const back of [0, 1, limit / 2, limit - 1]) expect(recent.add(`k${i - back}`)).toBe(i - back < 0);
    }
    // Memory is bounded: a key older than 2 * limit is forgotten.
    expect(recent.add('k0')).toBe(true);
  });
});

describe('a responder’s memory of requests it answered', () => {
  it('keeps a bounded key per request, however long its response topic and correlation data', () => {
    const topic = `replies/${'t'.repeat(30_000)}`;
    const long = seenKey(topic, Buffer.alloc(60_000, 7));
    expect(long.length).toBeLessThanOrEqual(64);
    expect(seenKey(topic, Buffer.alloc(60_000, 7))).toBe(long);
    expect(seenKey(topic, Buffer.alloc(60_000, 8))).not.toBe(long);
    // Short ones as they are (no digest per request on the common path).
    expect(seenKey('busbar/replies/abc', Buffer.from('c-1'))).toBe('busbar/replies/abc\u0000c-1');
  });
});
