import { type Bus, connect, silentLogger } from '@busbar/core';
import { type FailoverResult, recordFailover, runFailover, sleep, uniqueName } from '@busbar/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { driver } from '../src/index.js';
import { clusterAvailable, RabbitCluster } from './cluster.js';
import type { PrivateBroker } from './private-broker.js';

const ci = process.env.CI === 'true' || process.env.CI === '1';
const ready = clusterAvailable();
if (!ready) {
  if (ci) throw new Error('rabbitmq-server is not installed: the RabbitMQ failover tests need it');
  console.warn('[busbar] skipping the RabbitMQ failover tests: rabbitmq-server is not installed');
}

/** runFailover subscribes with core's default prefetch: max(100, 2 x concurrency 1). */
const PREFETCH = 100;

/**
 * What at-least-once allows here. Publish side: a publish whose confirm was lost with its connection is
 * retried by the workload with the same id, and RabbitMQ does not deduplicate: each re-send may add one
 * copy, so at most `republished` (every re-sent call carried one message). Consume side: messages delivered
 * but not yet acked when the consumer's connection or the queue leader goes away are requeued: at most the
 * prefetch window per such move, and a fault moves the consumer at most once per node it touches (three in
 * the rolling restart). Bound: republished + 3 x prefetch.
 */
function expectAtLeastOnce(result: FailoverResult): void {
  expect(result.lost).toBe(0);
  expect(result.confirmed).toBe(10_000);
  expect(result.duplicated).toBeLessThanOrEqual(result.republished + 3 * PREFETCH);
}

// One 3-node cluster per file; the faults run in sequence on it, each with its own topic and group.
describe.runIf(ready)('rabbitmq failover: 3 nodes, quorum queues, publisher confirms', () => {
  let cluster: RabbitCluster;
  let publisher: Bus;
  let consumer: Bus;
  let paceMs = 0;
  beforeAll(async () => {
    cluster = await RabbitCluster.start();
    const open = () =>
      connect({
        url: cluster.url,
        driver,
        logger: silentLogger,
        queueType: 'quorum',
        heartbeatSeconds: 5,
        connectTimeoutMs: 20_000,
        publishTimeoutMs: 10_000,
        reconnectInitialDelayMs: 100,
        reconnectMaxDelayMs: 1_000,
      });
    publisher = await open();
    consumer = await open();
    // Unpaced, 10,000 confirmed publishes take ~2 s, less than a fault takes to happen: pacing keeps the
    // traffic flowing through the fault (runFailover's window of 64 in flight, each after `paceMs`).
    publisher.use({ publish: () => (paceMs > 0 ? sleep(paceMs) : undefined) });
  }, 180_000);
  afterAll(async () => {
    await publisher?.close().catch(() => undefined);
    await consumer?.close().catch(() => undefined);
    await cluster?.stop();
  }, 90_000);

  /** A group's queue is declared by its first subscription and outlives it. */
  const declareGroup = async (topic: string, group: string) => {
    const subscription = await consumer.subscribe(topic, async () => undefined, { group });
    await subscription.close();
  };

  /**
   * One fault under traffic. The queue's leader and busbar's connections on it are looked up before (the CLI
   * takes seconds), so the fault strikes at once; `pace` ms between publishes per slot sets how long the
   * traffic lasts (10,000 x pace / 64).
   */
  const run = async (
    pace: number,
    faultAt: number,
    fault: (leader: PrivateBroker, queue: string) => Promise<void>,
  ): Promise<{ result: FailoverResult; note: string }> => {
    const topic = uniqueName('failover');
    const group = uniqueName('g');
    const queue = `${topic}.${group}`;
    // The group's quorum queue exists with all three members online before the workload starts.
    await declareGroup(topic, group);
    await cluster.awaitQueueOnline(queue);
    const leader = await cluster.leaderOf(queue);
    const onLeader = await cluster.connectionsOn(leader);
    paceMs = pace;
    try {
      const result = await runFailover({
        publisher,
        consumer,
        topic,
        group,
        faultAt,
        fault: () => fault(leader, queue),
      });
      await cluster.awaitQueueOnline(queue);
      return { result, note: `${onLeader} busbar connections on the leader` };
    } finally {
      paceMs = 0;
    }
  };

  it('the group queue is a quorum queue on all three nodes', async () => {
    const topic = uniqueName('members');
    await declareGroup(topic, 'g');
    await cluster.awaitQueueOnline(`${topic}.g`);
    const info = await cluster.queue(`${topic}.g`);
    expect(info.members?.sort()).toEqual(cluster.nodes.map((n) => n.node).sort());
  }, 120_000);

  it('leader SIGKILL + restart: nothing confirmed is lost', async () => {
    const { result, note } = await run(100, 0.3, async (leader) => {
      leader.signal('SIGKILL');
      await sleep(5_000);
      await leader.start();
    });
    recordFailover(
      'RabbitMQ',
      'leader SIGKILL + restart',
      result,
      `quorum queue leader killed, restarted after 5 s; ${note}`,
    );
    expectAtLeastOnce(result);
  }, 400_000);

  it('rolling restart (3 nodes): nothing confirmed is lost', async () => {
    const { result, note } = await run(200, 0.05, async (_leader, queue) => {
      for (const node of cluster.nodes) {
        await node.ctl(['stop']);
        await node.start();
        // The node's queue member is back before the next one goes: the quorum holds all along.
        await cluster.awaitQueueOnline(queue);
      }
    });
    recordFailover(
      'RabbitMQ',
      'rolling restart (3 nodes)',
      result,
      `rabbitmqctl stop, restart, wait for all members; ${note}`,
    );
    expectAtLeastOnce(result);
  }, 400_000);

  it('leader SIGSTOP 10 s: nothing confirmed is lost', async () => {
    const { result, note } = await run(100, 0.3, async (leader) => {
      leader.signal('SIGSTOP');
      await sleep(10_000);
      leader.signal('SIGCONT');
    });
    recordFailover('RabbitMQ', 'leader SIGSTOP 10 s', result, `quorum queue leader paused, then resumed; ${note}`);
    expectAtLeastOnce(result);
  }, 400_000);
});
