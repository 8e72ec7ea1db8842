import type { Cluster, Redis } from 'ioredis';
import { streamKey } from '../src/keys.js';

/**
 * The conformance suite's `refuseWrites` on Redis: the topic's stream key becomes a plain string, so XADD
 * and XGROUP CREATE fail with WRONGTYPE. A stream already there is renamed aside (same hash tag, so same
 * cluster slot) and renamed back on restore, with its entries and groups.
 */
export function refuseWrites(admin: () => Redis | Cluster, prefix = 'busbar:') {
  return async (topic: string): Promise<() => Promise<void>> => {
    const client = admin();
    const key = streamKey(prefix, topic);
    const aside = `${key}:refused`;
    const existed = (await client.exists(key)) === 1;
    if (existed) await client.rename(key, aside);
    await client.set(key, 'busbar test: writes to this topic are refused');
    return async () => {
      try {
        await client.del(key);
        if (existed) await client.rename(aside, key);
      } finally {
        client.disconnect();
      }
    };
  };
}
