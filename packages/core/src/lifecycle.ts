import type { Logger } from './logger.js';
import { isPattern } from './names.js';
import type { SubscriptionStats } from './subscription/index.js';
import type { ConnectionHealth, LagInfo, Transport } from './transport/spi.js';

export interface Health {
  /** `up` when every connection is up, `down` when any is down, else `reconnecting`. */
  readonly status: 'up' | 'reconnecting' | 'down';
  readonly transport: string;
  readonly connections: readonly ConnectionHealth[];
  readonly subscriptions: readonly SubscriptionStats[];
}

export interface GroupLag extends LagInfo {
  readonly topic: string;
  readonly group: string;
}

/** Consumer lag of each group subscription (once per group and topic), where the transport can measure it. */
export async function lagOf(transport: Transport, subscriptions: readonly SubscriptionStats[]): Promise<GroupLag[]> {
  if (!transport.lag) return [];
  const seen = new Set<string>();
  const out: GroupLag[] = [];
  for (const { topic, group } of subscriptions) {
    const id = `${group}\u0000${topic}`;
    if (group === undefined || isPattern(topic) || seen.has(id)) continue;
    seen.add(id);
    const info = await transport.lag(topic, group).catch(() => undefined);
    if (info) out.push({ topic, group, ...info });
  }
  return out;
}

export function healthOf(
  system: string,
  connections: readonly ConnectionHealth[],
  subscriptions: readonly SubscriptionStats[],
  closing: boolean,
): Health {
  const status = connections.some((c) => c.state === 'down')
    ? 'down'
    : connections.every((c) => c.state === 'up')
      ? 'up'
      : 'reconnecting';
  return { status: closing ? 'down' : status, transport: system, connections, subscriptions };
}

/** The least time close() gives a driver to disconnect, even when handlers used up closeTimeoutMs. */
const CLOSE_GRACE_MS = 500;

/**
 * A broker that is down or silent must not hold close() past its bound: the driver gets what is left of
 * closeTimeoutMs (at least CLOSE_GRACE_MS) to flush and disconnect, then close() returns anyway.
 */
export async function disconnect(transport: Transport, deadline: number, logger: Logger): Promise<void> {
  const budget = Math.max(deadline - Date.now(), CLOSE_GRACE_MS);
  let timer: NodeJS.Timeout | undefined;
  const timedOut = new Promise<'timeout'>((resolve) => {
    timer = setTimeout(() => resolve('timeout'), budget);
  });
  try {
    const closing = transport.close(Date.now() + budget);
    const result = await Promise.race([closing.then(() => 'closed' as const), timedOut]);
    if (result === 'timeout')
      logger.warn(`Disconnecting from the broker took over ${budget} ms; close() returned anyway`);
  } finally {
    clearTimeout(timer);
  }
}
