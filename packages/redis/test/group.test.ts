import { silentLogger } from '@busbar/core';
import type { Delivery } from '@busbar/core/transport';
import { brokerAvailable, brokerUrls, createFaultProxy, uniqueName } from '@busbar/testing';
import { Redis } from 'ioredis';
import { describe, expect, it } from 'vitest';
import { CloseState } from '../src/closing.js';
import { GroupConsumer } from '../src/group.js';
import { topicKeys } from '../src/keys.js';

const ok = await brokerAvailable('redis');
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** A member named 'new' of group 'g' on `keys`: prefetch 10, claims only entries idle 100 ms, at start and on demand. */
function newMember(
  client: Redis,
  reader: Redis,
  keys: ReturnType<typeof topicKeys>,
  onDelivery: (d: Delivery) => void,
): GroupConsumer {
  return new GroupConsumer({
    client,
    reader,
    topic: keys.stream,
    prefetch: 10,
    blockMs: 500,
    opTimeoutMs: 5_000,
    closing: new CloseState(),
    secrets: [],
    logger: silentLogger,
    keys,
    group: 'g',
    consumer: 'new',
    claimIdleMs: 100,
    claimIntervalMs: 60_000,
    retryPollMs: 1_000,
    callbacks: { onDelivery, onError: () => undefined },
  });
}

describe.runIf(ok)('redis group member', () => {
  // The re-read of its own pending entries (at start, after a reconnect) goes over the member's read
  // connection; claims and acks go over the shared one. A re-read that Redis served before an ack was
  // written, and whose reply came after it, handed the acked entry out a second time: a re-drive walk
  // re-published such a dead letter twice (seen on a Redis Cluster, where the read connection is slow
  // to come up). Here the read connection is made slow on purpose, through a proxy.
  it('an entry settled while a re-read was on its way is not handed out again by that re-read', {
    timeout: 30_000,
  }, async () => {
    const target = new URL(brokerUrls.redis);
    const proxy = await createFaultProxy({ target: { host: target.hostname, port: Number(target.port || 6379) } });
    const admin = new Redis(brokerUrls.redis);
    const client = new Redis(brokerUrls.redis);
    const reader = new Redis(proxy.url(brokerUrls.redis));
    const keys = topicKeys('busbar:', uniqueName('reread'), 'g');
    const group = 'g';
    try {
      await admin.xgroup('CREATE', keys.stream, group, '$', 'MKSTREAM');
      const ids: string[] = [];
      for (let n = 0; n < 3; n++) ids.push((await admin.xadd(keys.stream, '*', 'n', String(n))) as string);
      // Pending on a member that went away, idle past the claim threshold: the new member claims them.
      await admin.xreadgroup('GROUP', group, 'gone', 'STREAMS', keys.stream, '>');
      await sleep(150);
      await reader.ping();
      proxy.setLatency(300);

      const handed: string[] = [];
      const member = newMember(client, reader, keys, (d) => {
        handed.push((d as unknown as { raw: { entryId: string } }).raw.entryId);
        // Done after the re-read was served (300 ms) and before its reply is back (600 ms).
        setTimeout(() => void d.ack(), 450);
      });
      await member.start();
      await sleep(1_500);
      expect(handed.sort()).toEqual([...ids].sort());
      expect(((await admin.xpending(keys.stream, group)) as [number])[0]).toBe(0);

      // The member still works: a new entry comes once.
      const later = (await admin.xadd(keys.stream, '*', 'n', 'later')) as string;
      await expect.poll(() => handed.includes(later), { timeout: 5_000 }).toBe(true);
      expect(handed.filter((id) => id === later)).toHaveLength(1);
      await member.close();
    } finally {
      await proxy.close();
      await admin.del(keys.stream, keys.retryStream, keys.retrySet);
      admin.disconnect();
      client.disconnect();
      reader.disconnect();
    }
  });

  // A claim pass takes as many idle entries as there is room for (the prefetch). The rest used to wait for the
  // next pass, a claim interval later: a dead-letter purge after a peek (10,050 released entries, room 10,000)
  // went idle and ended first, reporting 10,000 and leaving 50 behind.
  it('a claim pass that ran out of room claims again as soon as room frees, not a claim interval later', {
    timeout: 30_000,
  }, async () => {
    const admin = new Redis(brokerUrls.redis);
    const client = new Redis(brokerUrls.redis);
    const reader = new Redis(brokerUrls.redis);
    const keys = topicKeys('busbar:', uniqueName('backlog'), 'g');
    const group = 'g';
    let member: GroupConsumer | undefined;
    try {
      await admin.xgroup('CREATE', keys.stream, group, '$', 'MKSTREAM');
      const ids: string[] = [];
      for (let n = 0; n < 35; n++) ids.push((await admin.xadd(keys.stream, '*', 'n', String(n))) as string);
      await admin.xreadgroup('GROUP', group, 'gone', 'STREAMS', keys.stream, '>');
      await sleep(150);

      const handed: string[] = [];
      member = newMember(client, reader, keys, (d) => {
        handed.push((d as unknown as { raw: { entryId: string } }).raw.entryId);
        // Later, as a handler does: acked at once, room would free inside the claim pass itself.
        setTimeout(() => void d.ack(), 20);
      });
      await member.start();
      await expect.poll(() => handed.length, { timeout: 5_000 }).toBe(35);
      expect(handed.sort()).toEqual([...ids].sort());
      await expect.poll(async () => ((await admin.xpending(keys.stream, group)) as [number])[0]).toBe(0);
    } finally {
      await member?.close();
      await admin.del(keys.stream, keys.retryStream, keys.retrySet);
      admin.disconnect();
      client.disconnect();
      reader.disconnect();
    }
  });
});
