import { BusbarError, connect, silentLogger } from '@busbar/core';
import { brokerAvailable, brokerUrls, uniqueName, waitFor } from '@busbar/testing';
import { Redis } from 'ioredis';
import { describe, expect, it } from 'vitest';
import { driver } from '../src/index.js';

const ok = await brokerAvailable('redis');

/** The shared server's URL with `path` instead of its own. */
const withPath = (path: string): string => {
  const url = new URL(brokerUrls.redis);
  url.pathname = path;
  return url.toString();
};

describe.runIf(ok)('redis database in the URL path', () => {
  it('a path that is no database number, or a database the server lacks, fails connect typed (it used database 0)', async () => {
    for (const path of ['/abc', '/1.5', '/99999']) {
      const error = await connect({ url: withPath(path), driver, logger: silentLogger }).then(
        async (bus) => {
          await bus.close();
          return undefined;
        },
        (e: unknown) => e,
      );
      expect(BusbarError.is(error, 'BUSBAR_CONFIG'), `${path}: ${String(error)}`).toBe(true);
      expect((error as BusbarError).retryable).toBe(false);
    }
  });

  it('/2 reads and writes database 2', async () => {
    const bus = await connect({ url: withPath('/2'), driver, logger: silentLogger });
    const raw = new Redis(withPath('/2'));
    try {
      const topic = uniqueName('db');
      const seen: unknown[] = [];
      await bus.subscribe(topic, (m) => void seen.push(m.payload), { group: 'g' });
      await bus.publish(topic, 'in db 2');
      await waitFor(() => seen.length === 1, 10_000, 'the message');
      expect((await raw.keys(`*${topic}*`)).length).toBeGreaterThan(0);
      await raw.select(0);
      expect(await raw.keys(`*${topic}*`)).toEqual([]);
    } finally {
      await bus.close();
      raw.disconnect();
    }
  });
});
