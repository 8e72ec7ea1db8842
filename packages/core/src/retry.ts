import type { RetryPolicy } from './options.js';

/**
 * Delay before the next attempt after attempt `attempt` (1-based) failed:
 * exponential (initial x multiplier^(attempt-1), capped at maxDelayMs), then a
 * random `jitter` fraction removed so that a burst of failures does not retry
 * in lockstep.
 */
export function backoffDelay(policy: RetryPolicy, attempt: number, random: () => number = Math.random): number {
  const exponential = policy.initialDelayMs * policy.multiplier ** Math.max(0, attempt - 1);
  // 0 x Infinity (a huge attempt count with no initial delay) is NaN: that is no delay, not a NaN timer.
  const capped = Number.isNaN(exponential) ? 0 : Math.min(policy.maxDelayMs, exponential);
  return Math.round(capped * (1 - policy.jitter * random()));
}

/**
 * How a refused dead-letter write is tried again: from 1 s, doubling, up to 5 minutes. A broker that refuses
 * a write (full, forbidden, too large) rarely changes its mind within milliseconds, and the message waits in
 * the retry path meanwhile, not in the consumer's window.
 */
export const DEAD_LETTER_BACKOFF: RetryPolicy = {
  maxAttempts: Number.MAX_SAFE_INTEGER,
  initialDelayMs: 1_000,
  maxDelayMs: 300_000,
  multiplier: 2,
  jitter: 0.2,
};
