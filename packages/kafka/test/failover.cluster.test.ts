import { type Bus, connect, silentLogger } from '@busbar/core';
import { type FailoverResult, recordFailover, runFailover, sleep, uniqueName } from '@busbar/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { driver } from '../src/index.js';
import { KafkaCluster } from './cluster.js';
import { kraftAvailable } from './kraft.js';

const ready = kraftAvailable('the Kafka cluster failover tests');

const PREFETCH = 100;

/**
 * What at-least-once allows here. Publish side: a publish that failed or timed out while its batch was in
 * fact written is sent again (busbar replaces the idempotent producer after a failure, so the broker cannot
 * drop the copy): at most the publishes in flight, 64, per failed send round; runFailover reports each such
 * message in `republished`. Consume side: messages delivered but not yet committed when a partition moves
 * (a member's session or the coordinator is lost) are delivered again: at most the prefetch window of the
 * member (100) plus what arrived in one commit interval, per rebalance. Bound: republished + 3 x prefetch.
 */
function expectAtLeastOnce(result: FailoverResult): void {
  expect(result.lost).toBe(0);
  expect(result.confirmed).toBe(10_000);
  expect(result.duplicated).toBeLessThanOrEqual(result.republished + 3 * PREFETCH);
}

// One 3-node cluster per file; the faults run in sequence on it, each with its own topic and group.
describe.runIf(ready)('kafka failover: 3 KRaft nodes, acks=all, min.insync.replicas=2', () => {
  let cluster: KafkaCluster;
  let publisher: Bus;
  let consumer: Bus;
  beforeAll(async () => {
    cluster = await KafkaCluster.start();
    const open = () =>
      connect({
        url: cluster.url,
        driver,
        logger: silentLogger,
        replicationFactor: 3,
        connectTimeoutMs: 30_000,
        publishTimeoutMs: 20_000,
      });
    publisher = await open();
    consumer = await open();
  }, 240_000);
  afterAll(async () => {
    await publisher?.close();
    await consumer?.close();
    await cluster?.stop();
  }, 120_000);

  const run = async (fault: (topic: string) => Promise<void>) => {
    const topic = uniqueName('failover');
    const group = uniqueName('g');
    // Created (replication factor 3) and in sync before the workload starts.
    await publisher.publish(topic, { n: -1 });
    await cluster.waitInSync([topic]);
    const result = await runFailover({
      publisher,
      consumer,
      topic,
      group,
      fault: () => fault(topic),
      deliverWithinMs: 120_000,
    });
    await cluster.waitInSync([topic, '__consumer_offsets']);
    return result;
  };

  it('leader SIGKILL + restart: nothing confirmed is lost', async () => {
    const result = await run(async (topic) => {
      const leader = await cluster.leaderOf(topic);
      await leader.kill();
      await sleep(5_000);
      await leader.start(120_000);
    });
    recordFailover(
      'Kafka',
      'leader SIGKILL + restart',
      result,
      'leader of partition 0 of the topic; restarted after 5 s',
    );
    expectAtLeastOnce(result);
  }, 400_000);

  it('rolling restart (3 nodes): nothing confirmed is lost', async () => {
    const result = await run(async (topic) => {
      for (const node of cluster.nodes) {
        await node.stop(60_000);
        await node.start(120_000);
        await cluster.waitInSync([topic, '__consumer_offsets']);
      }
    });
    recordFailover('Kafka', 'rolling restart (3 nodes)', result, 'SIGTERM, restart, wait until back in the ISR, next');
    expectAtLeastOnce(result);
  }, 600_000);

  it('leader SIGSTOP 10 s: nothing confirmed is lost', async () => {
    const result = await run(async (topic) => {
      const leader = await cluster.leaderOf(topic);
      leader.pause();
      await sleep(10_000);
      leader.resume();
    });
    recordFailover('Kafka', 'leader SIGSTOP 10 s', result, 'leader of partition 0 of the topic, then SIGCONT');
    expectAtLeastOnce(result);
  }, 400_000);
});
