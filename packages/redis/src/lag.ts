import type { LagInfo } from '@busbar/core/transport';
import { type RedisClient, subcommand } from './client.js';
import type { TopicKeys } from './keys.js';

/** One group's entry of an XINFO GROUPS reply, as field -> value. */
function groupInfo(reply: unknown, group: string): Map<string, unknown> | undefined {
  if (!Array.isArray(reply)) return undefined;
  for (const row of reply) {
    if (!Array.isArray(row)) continue;
    const info = new Map<string, unknown>();
    for (let i = 0; i + 1 < row.length; i += 2) info.set(String(row[i]), row[i + 1]);
    if (info.get('name') === group) return info;
  }
  return undefined;
}

const orNull = (promise: Promise<unknown>) => promise.catch(() => null);

/**
 * Lag of a group: entries of the topic stream it has not read (XINFO GROUPS
 * `lag`, Redis >= 7) plus retries not yet delivered again (scheduled in the
 * retry set or waiting in the retry stream); pending is both streams' PEL;
 * backlog is the topic stream's length.
 */
export async function groupLag(client: RedisClient, keys: TopicKeys, group: string): Promise<LagInfo | undefined> {
  const [main, retry, backlog, retryLen, scheduled] = await Promise.all([
    orNull(subcommand(client, 'XINFO', 'GROUPS', keys.stream)),
    orNull(subcommand(client, 'XINFO', 'GROUPS', keys.retryStream)),
    client.call('XLEN', keys.stream),
    client.call('XLEN', keys.retryStream),
    client.call('ZCARD', keys.retrySet),
  ]);
  const info = groupInfo(main, group);
  if (!info) return undefined;
  const retryInfo = groupInfo(retry, group);
  const retryPending = Number(retryInfo?.get('pending') ?? 0);
  const rawLag = info.get('lag');
  const out: { lag?: number; pending: number; backlog: number } = {
    pending: Number(info.get('pending') ?? 0) + retryPending,
    backlog: Number(backlog),
  };
  // `lag` is null when Redis cannot tell (after deletions or trimming): leave it unknown.
  if (rawLag !== null && rawLag !== undefined) {
    out.lag = Number(rawLag) + Math.max(0, Number(retryLen) - retryPending) + Number(scheduled);
  }
  return out;
}
