import type { Bus } from '@busbar/core';

export interface ConformanceOptions {
  /** Opens a new bus on the transport under test; called many times (one connection each). */
  connect: () => Promise<Bus>;
  /** Multiplies every wait, for slow brokers (Kafka group joins). Default 1. */
  timeoutScale?: number;
  /** Time a new group subscription needs before it reliably receives (e.g. a Kafka rebalance). Default 0. */
  settleMs?: number;
}

export function describeConformance(_name: string, _options: ConformanceOptions): void {
  throw new Error('not implemented yet');
}
