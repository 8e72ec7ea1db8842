import { type Bus, connect, silentLogger } from '@busbar/core';
import { type FailoverResult, recordFailover, runFailover, sleep, uniqueName } from '@busbar/testing';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { driver } from '../src/index.js';
import { clusterAvailable, NatsCluster } from './cluster.js';

const ready = clusterAvailable();

/** runFailover subscribes with core's default prefetch: max(100, 2 x concurrency 1) = the group's ack window. */
const PREFETCH = 100;
const ACK_WAIT_MS = 5_000;

/**
 * What at-least-once allows here. Publish side: a publish that timed out or failed while the message was in
 * fact stored is sent again with the same id, and JetStream drops it by its `Nats-Msg-Id` (the duplicate
 * window is 2 min, and the stream's dedup state is replicated), so publishing adds no duplicate. Consume
 * side: messages delivered but whose ack did not reach the consumer's leader (the client's connection or the
 * consumer leader moved) come back after the ack wait: at most the ack window, `max_ack_pending` = prefetch,
 * per such move. A fault moves the leader or the client's connection at most once per node it touches, and
 * rolling restart touches three. Bound: 3 x prefetch.
 */
function expectAtLeastOnce(result: FailoverResult): void {
  expect(result.lost).toBe(0);
  expect(result.confirmed).toBe(10_000);
  expect(result.duplicated).toBeLessThanOrEqual(3 * PREFETCH);
}

// One 3-node JetStream cluster per file; the faults run in sequence on it, each with its own topic and group.
describe.runIf(ready)('nats failover: 3 JetStream nodes, R3 streams, file storage', () => {
  let cluster: NatsCluster;
  let publisher: Bus;
  let consumer: Bus;
  beforeAll(async () => {
    cluster = await NatsCluster.start();
    const open = () =>
      connect({
        url: cluster.url,
        driver,
        logger: silentLogger,
        replicas: 3,
        ackWaitMs: ACK_WAIT_MS,
        connectTimeoutMs: 20_000,
        publishTimeoutMs: 10_000,
        reconnectTimeWaitMs: 250,
      });
    publisher = await open();
    consumer = await open();
  }, 120_000);
  // A failure here is often a cluster that did not settle: the nodes' logs say what it did.
  beforeEach(({ onTestFailed }) => onTestFailed(() => console.error(cluster.logs())));
  afterAll(async () => {
    await publisher?.close().catch(() => undefined);
    await consumer?.close().catch(() => undefined);
    await cluster?.stop();
  }, 60_000);

  const run = async (fault: (stream: string) => Promise<void>) => {
    const topic = uniqueName('failover');
    const stream = `BUSBAR_${topic}`;
    const group = uniqueName('g');
    // The stream exists (R3, every replica current) before the workload starts; the group starts after it.
    await publisher.publish(topic, { n: -1 });
    expect(await cluster.replicas(stream)).toBe(3);
    await cluster.waitCurrent(stream);
    const result = await runFailover({
      publisher,
      consumer,
      topic,
      group,
      fault: () => fault(stream),
      deliverWithinMs: 120_000,
    }).catch((error: unknown) => {
      // In the message, so that a CI summary that keeps only the failures still shows the nodes' warnings.
      const warnings = cluster.logs(12, /\[(WRN|ERR)\]/);
      throw new Error(`${error instanceof Error ? error.message : String(error)}\n${warnings}`, { cause: error });
    });
    await cluster.waitCurrent(stream);
    // Publishing added no duplicate: every re-send was dropped by its Nats-Msg-Id (10,000 plus the first one).
    expect(await cluster.messages(stream)).toBe(10_001);
    return result;
  };

  it('leader SIGKILL + restart: nothing confirmed is lost', async () => {
    let killed = '';
    const result = await run(async (stream) => {
      const leader = await cluster.leaderOf(stream);
      killed = leader.name;
      await leader.signal('SIGKILL');
      await sleep(5_000);
      await leader.start();
    });
    recordFailover('NATS', 'leader SIGKILL + restart', result, `stream leader (${killed}) killed, restarted after 5 s`);
    expectAtLeastOnce(result);
  }, 400_000);

  it('rolling restart (3 nodes): nothing confirmed is lost', async () => {
    const result = await run(async (stream) => {
      for (const node of cluster.nodes) {
        await node.signal('SIGTERM');
        await node.start();
        // The node caught up before the next one goes: R3 keeps a quorum all along.
        await cluster.waitCurrent(stream);
      }
    });
    recordFailover(
      'NATS',
      'rolling restart (3 nodes)',
      result,
      'SIGTERM, restart, wait until every replica is current',
    );
    expectAtLeastOnce(result);
  }, 400_000);

  it('leader SIGSTOP 10 s: nothing confirmed is lost', async () => {
    let paused = '';
    const result = await run(async (stream) => {
      const leader = await cluster.leaderOf(stream);
      paused = leader.name;
      await leader.signal('SIGSTOP');
      await sleep(10_000);
      await leader.signal('SIGCONT');
    });
    recordFailover('NATS', 'leader SIGSTOP 10 s', result, `stream leader (${paused}) paused, then resumed`);
    expectAtLeastOnce(result);
  }, 400_000);
});
