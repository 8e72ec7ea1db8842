import type { RetryPolicy } from './options.js';

/**
 * Delay before the next attempt after attempt `attempt` (1-based) failed:
 * exponential (initial x multiplier^(attempt-1), capped at maxDelayMs), then a
 * random `jitter` fraction removed so that a burst of failures does not retry
 * in lockstep.
 */
export function backoffDelay(policy: RetryPolicy, attempt: number, random: () => number = Math.random): number {
  const exponential = policy.initialDelayMs * policy.multiplier ** Math.max(0, attempt - 1);
  const capped = Math.min(policy.maxDelayMs, exponential);
  return Math.round(capped * (1 - policy.jitter * random()));
}
