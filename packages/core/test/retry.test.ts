import { backoffDelay } from '@busbar/core';
import { describe, expect, it } from 'vitest';

const policy = { maxAttempts: 5, initialDelayMs: 200, maxDelayMs: 30_000, multiplier: 2, jitter: 0.5 };

describe('backoffDelay', () => {
  it('grows exponentially from the initial delay without jitter', () => {
    const exact = { ...policy, jitter: 0 };
    expect([1, 2, 3, 4].map((a) => backoffDelay(exact, a))).toEqual([200, 400, 800, 1_600]);
  });

  it('caps at maxDelayMs', () => {
    expect(backoffDelay({ ...policy, jitter: 0 }, 20)).toBe(30_000);
  });

  it('removes up to the jitter fraction at random', () => {
    expect(backoffDelay(policy, 3, () => 0)).toBe(800);
    expect(backoffDelay(policy, 3, () => 1)).toBe(400);
    expect(backoffDelay(policy, 3, () => 0.5)).toBe(600);
    const spread = new Set(Array.from({ length: 50 }, () => backoffDelay(policy, 3)));
    expect(spread.size).toBeGreaterThan(10);
    for (const d of spread) expect(d >= 400 && d <= 800).toBe(true);
  });
});
