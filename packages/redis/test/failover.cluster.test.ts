import { type Bus, connect, silentLogger } from '@busbar/core';
import { type FailoverResult, recordFailover, runFailover, sleep, uniqueName } from '@busbar/testing';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { driver } from '../src/index.js';
import { SentinelSetup, sentinelAvailable } from './sentinel-redis.js';

const ready = sentinelAvailable();

/** runFailover subscribes with core's default prefetch: max(100, 2 x concurrency 1). */
const PREFETCH = 100;

/** A failed attempt that still left a copy costs at least WAIT's timeout plus runFailover's 200 ms pause. */
const ATTEMPT_MS = 1_000 + 200;

/**
 * What at-least-once allows here (measured rows in docs/production.md). Loss: a publish resolves only after
 * `WAIT 1` saw the replica take it, and Sentinel promotes that replica, so nothing confirmed is lost.
 * Duplicates: (1) publishing: an attempt whose XADD reached a primary but whose WAIT or reply failed leaves a
 * copy, and the message is sent again (same id). While the primary has no replica in sync (from the fault
 * until the old primary is back as a replica: `unsyncedMs`) every attempt of a message can leave one, so
 * per republished message at most unsyncedMs / ATTEMPT_MS + 1 copies. (2) consuming: consumer-group state
 * (XACK, the last-delivered id, the pending list) replicates asynchronously; deliveries whose read or ack had
 * not reached the replica come again: at most the prefetch window per failover (each fault fails over once),
 * plus the window held when the consumer reconnects. Bound: (1) + 2 x prefetch.
 */
function expectAtLeastOnce(result: FailoverResult, unsyncedMs: number, whereLost = ''): void {
  expect(result.lost, `lost ${result.lostIds.join(', ')}: ${whereLost}`).toBe(0);
  expect(result.confirmed).toBe(10_000);
  const copiesPerRepublish = Math.ceil(unsyncedMs / ATTEMPT_MS) + 1;
  expect(result.duplicated).toBeLessThanOrEqual(result.republished * copiesPerRepublish + 2 * PREFETCH);
}

// One Sentinel setup per file; the faults run in sequence on it, each with its own topic and group.
describe.runIf(ready)('redis failover: 1 primary + 1 replica, 3 sentinels (quorum 2), WAIT 1', () => {
  let setup: SentinelSetup;
  let publisher: Bus;
  let consumer: Bus;
  beforeAll(async () => {
    setup = await SentinelSetup.start();
    const open = () =>
      connect({
        url: setup.url,
        driver,
        logger: silentLogger,
        waitReplicas: 1,
        waitTimeoutMs: 1_000,
        connectTimeoutMs: 20_000,
        publishTimeoutMs: 5_000,
      });
    publisher = await open();
    consumer = await open();
  }, 120_000);
  afterAll(async () => {
    await publisher?.close().catch(() => undefined);
    await consumer?.close().catch(() => undefined);
    await setup?.stop();
  }, 60_000);

  /** Where the lost messages are on the primary now: in the stream or not, pending for whom (a failing run says). */
  const whereLost = async (topic: string, group: string, ids: readonly string[]): Promise<string> => {
    const node = await setup.primary();
    const redis = new Redis({ port: node.port, host: '127.0.0.1', maxRetriesPerRequest: 1 });
    try {
      const stream = `busbar:{${topic}}`;
      const entries = (await redis.xrange(stream, '-', '+')) as [string, string[]][];
      const found = ids.map((id) => {
        const entry = entries.find(([, fields]) => fields.includes(id));
        return `${id} ${entry ? `in the stream as ${entry[0]}` : 'not in the stream'}`;
      });
      const groups = await redis.xinfo('GROUPS', stream);
      const pending = await redis.xpending(stream, group);
      return `primary ${node.port}, ${entries.length} entries; ${found.join('; ')}; groups ${JSON.stringify(groups)}; pending ${JSON.stringify(pending)}`;
    } catch (error) {
      return `(looking them up failed: ${String(error)})`;
    } finally {
      redis.disconnect();
    }
  };

  /** The workload around `fault`; `unsyncedMs`: from the fault until a replica is in sync again. */
  const run = async (
    fault: () => Promise<void>,
  ): Promise<{ result: FailoverResult; unsyncedMs: number; where: string }> => {
    await setup.waitSynced();
    let unsyncedMs = 0;
    const topic = uniqueName('failover');
    const group = uniqueName('g');
    const result = await runFailover({
      publisher,
      consumer,
      topic,
      group,
      fault: async () => {
        const started = Date.now();
        await fault();
        await setup.waitSynced(false);
        unsyncedMs = Date.now() - started;
      },
      deliverWithinMs: 120_000,
    });
    return { result, unsyncedMs, where: result.lost > 0 ? await whereLost(topic, group, result.lostIds) : '' };
  };

  it('primary SIGKILL + restart: nothing confirmed is lost', async () => {
    const { result, unsyncedMs, where } = await run(async () => {
      const old = await setup.primary();
      old.signal('SIGKILL');
      await old.exited();
      const now = await setup.waitFailover(old);
      // Back as a replica of the new primary, as Sentinel's rewritten configuration would start it.
      await old.start(now.port);
    });
    recordFailover('Redis', 'primary SIGKILL + restart', result, 'Sentinel, 1 replica, waitReplicas 1 (WAIT 1 1000)');
    expectAtLeastOnce(result, unsyncedMs, where);
  }, 300_000);

  it('primary SIGSTOP 10 s: nothing confirmed is lost', async () => {
    const { result, unsyncedMs, where } = await run(async () => {
      const old = await setup.primary();
      old.signal('SIGSTOP');
      await sleep(10_000);
      old.signal('SIGCONT');
      // Sentinel failed over meanwhile and turns the resumed old primary into a replica.
      await setup.waitFailover(old);
    });
    recordFailover('Redis', 'primary SIGSTOP 10 s', result, 'Sentinel, 1 replica, waitReplicas 1 (WAIT 1 1000)');
    expectAtLeastOnce(result, unsyncedMs, where);
  }, 300_000);

  it('rolling restart (replica, then primary with failover): nothing confirmed is lost', async () => {
    const { result, unsyncedMs, where } = await run(async () => {
      const primary = await setup.primary();
      const replica = setup.nodes.find((n) => n !== primary) ?? primary;
      replica.signal('SIGTERM');
      await replica.exited();
      await replica.start(primary.port);
      await setup.waitSynced();
      primary.signal('SIGTERM');
      await primary.exited();
      const now = await setup.waitFailover(primary);
      await primary.start(now.port);
    });
    recordFailover('Redis', 'rolling restart (2 nodes)', result, 'Sentinel, 1 replica, waitReplicas 1 (WAIT 1 1000)');
    expectAtLeastOnce(result, unsyncedMs, where);
  }, 300_000);
});
