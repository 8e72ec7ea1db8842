import { type RedisClient, subcommand } from './client.js';
import { isReplyError } from './errors.js';
import type { TopicKeys } from './keys.js';

/** Creates the group on the topic stream (from now on) and on its retry stream; an existing group is fine. */
export async function ensureGroup(client: RedisClient, keys: TopicKeys, group: string): Promise<void> {
  for (const [key, from] of [
    [keys.stream, '$'],
    [keys.retryStream, '0'],
  ] as const) {
    try {
      await subcommand(client, 'XGROUP', 'CREATE', key, group, from, 'MKSTREAM');
    } catch (error) {
      if (!isReplyError(error, 'BUSYGROUP')) throw error;
    }
  }
}

/** Delivery counts (XPENDING) of this consumer's pending entries between two ids. */
export async function deliveryCounts(
  client: RedisClient,
  at: { stream: string; group: string; consumer: string },
  start: string,
  end: string,
  count: number,
): Promise<Map<string, number>> {
  const rows = (await client.call('XPENDING', at.stream, at.group, start, end, count, at.consumer)) as [
    string,
    string,
    number,
    number,
  ][];
  return new Map(rows.map((row) => [row[0], Number(row[3])]));
}

/**
 * Deletes a consumer that holds no pending entries. One that still holds
 * some (released at close) stays until other members claim them: deleting
 * it would drop its pending entries, i.e. lose them.
 */
export async function forgetConsumer(
  client: RedisClient,
  keys: TopicKeys,
  group: string,
  consumer: string,
): Promise<void> {
  const [main, retry] = (await Promise.all([
    client.call('XPENDING', keys.stream, group, '-', '+', 1, consumer),
    client.call('XPENDING', keys.retryStream, group, '-', '+', 1, consumer),
  ])) as unknown[][];
  if (main?.length !== 0 || retry?.length !== 0) return;
  await subcommand(client, 'XGROUP', 'DELCONSUMER', keys.stream, group, consumer);
  await subcommand(client, 'XGROUP', 'DELCONSUMER', keys.retryStream, group, consumer);
}
