import { connect, type Logger } from '@busbar/core';
import { brokerAvailable, brokerUrls, collect, uniqueName, waitFor } from '@busbar/testing';
import { Redis } from 'ioredis';
import { describe, expect, it } from 'vitest';
import { driver } from '../src/index.js';

const ok = await brokerAvailable('redis');

describe.runIf(ok)('redis acks', () => {
  it('an XACK Redis refuses is one warning for the batch; the entries stay pending and the bus keeps working', {
    timeout: 30_000,
  }, async () => {
    const admin = new Redis(brokerUrls.redis);
    // A user allowed everything but XACK: the acks of a whole batch fail together, as when Redis goes away.
    const user = uniqueName('noack');
    const password = uniqueName('pw');
    await admin.call('ACL', 'SETUSER', user, 'on', `>${password}`, '~*', '&*', '+@all', '-xack');
    const url = new URL(brokerUrls.redis);
    url.username = user;
    url.password = password;
    const warnings: { message: string; fields: Record<string, unknown> | undefined }[] = [];
    const logger: Logger = {
      debug: () => undefined,
      info: () => undefined,
      warn: (message, fields) => void warnings.push({ message, fields }),
      error: () => undefined,
    };
    const topic = uniqueName('acks');
    const group = uniqueName('g');
    const bus = await connect({ url: url.toString(), driver, logger, claimIdleMs: 60_000, closeTimeoutMs: 2_000 });
    try {
      const seen = collect<number>();
      await bus.subscribe(topic, (m) => void seen.push(m.payload as number), { group, prefetch: 100 });
      await bus.publishBatch(
        topic,
        [1, 2, 3].map((payload) => ({ payload })),
      );
      await seen.waitForCount(3, 5_000);
      await waitFor(() => warnings.length > 0, 5_000, 'the warning');
      await new Promise((resolve) => setTimeout(resolve, 100));
      const acking = warnings.filter((w) => w.message.startsWith('Acking'));
      // One warning per failed batch (3 messages read together), not one per message.
      expect(acking.length).toBeLessThanOrEqual(2);
      expect(acking.map((w) => w.message).join(' ')).toMatch(/Acking [1-3] message\(s\) on '.*' failed/);
      expect(String(acking[0]?.fields?.error)).not.toContain(password);
      const pending = (await admin.call('XPENDING', `busbar:{${topic}}`, group)) as [number, ...unknown[]];
      expect(Number(pending[0])).toBe(3);
      // Still working: a later message is handled.
      await bus.publish(topic, 4);
      await seen.waitForCount(4, 5_000);
      expect(seen.items).toEqual([1, 2, 3, 4]);
    } finally {
      const closing = Date.now();
      await bus.close();
      expect(Date.now() - closing).toBeLessThan(3_000);
      await admin.call('ACL', 'DELUSER', user);
      await admin.del(`busbar:{${topic}}`, `busbar:{${topic}}:retry:${group}`);
      admin.disconnect();
    }
  });
});
