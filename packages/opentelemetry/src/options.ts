import { ConfigError } from '@busbar/core';
import type { InstrumentationOptions } from './instrument.js';

const shown = (value: unknown): string =>
  typeof value === 'string' ? JSON.stringify(value) : typeof value === 'number' ? String(value) : `a ${typeof value}`;

/**
 * Checked once at install, so a bad value fails loudly there instead of
 * misbehaving later: a `settleTimeoutMs` of NaN, for instance, made the span
 * sweeper a 1 ms timer (node's fallback for a NaN delay) that never ended a span.
 */
export function checkOptions(options: InstrumentationOptions): void {
  const { settleTimeoutMs, consumerParent } = options;
  if (
    settleTimeoutMs !== undefined &&
    (typeof settleTimeoutMs !== 'number' || Number.isNaN(settleTimeoutMs) || settleTimeoutMs < 0)
  ) {
    throw new ConfigError(`settleTimeoutMs must be a number of milliseconds >= 0, got ${shown(settleTimeoutMs)}`);
  }
  if (consumerParent !== undefined && consumerParent !== 'parent' && consumerParent !== 'link') {
    throw new ConfigError(`consumerParent must be 'parent' or 'link', got ${shown(consumerParent)}`);
  }
}
