import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort, sleep } from '@busbar/testing';
import type { Admin } from 'kafkajs';
import kafkajs from 'kafkajs';
import { clusterId, KraftNode } from './kraft.js';

const { Kafka, logLevel } = kafkajs;

/**
 * Three KRaft nodes on one machine, each a combined broker + controller (a 3-voter quorum), with the
 * settings that make an acknowledged record survive a node: replication factor 3, min.insync.replicas=2,
 * no unclean leader election. Each JVM keeps to -Xmx384m (kraft.ts).
 */
export class KafkaCluster {
  readonly nodes: KraftNode[];
  readonly #dir: string;
  readonly #ports: number[];
  readonly #admin: Admin;

  private constructor(dir: string, ports: number[], controllers: number[]) {
    this.#dir = dir;
    this.#ports = ports;
    const voters = controllers.map((port, i) => `${i + 1}@127.0.0.1:${port}`).join(',');
    this.nodes = ports.map((port, i) => {
      const nodeDir = join(dir, `node-${i + 1}`);
      mkdirSync(nodeDir);
      return new KraftNode(
        nodeDir,
        {
          'process.roles': 'broker,controller',
          'node.id': i + 1,
          'controller.quorum.voters': voters,
          listeners: `PLAINTEXT://127.0.0.1:${port},CONTROLLER://127.0.0.1:${controllers[i]}`,
          'advertised.listeners': `PLAINTEXT://127.0.0.1:${port}`,
          'controller.listener.names': 'CONTROLLER',
          'inter.broker.listener.name': 'PLAINTEXT',
          'listener.security.protocol.map': 'PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT',
          'log.dirs': join(nodeDir, 'data'),
          'num.partitions': 3,
          'default.replication.factor': 3,
          'min.insync.replicas': 2,
          'unclean.leader.election.enable': false,
          'auto.create.topics.enable': false,
          'offsets.topic.replication.factor': 3,
          'offsets.topic.num.partitions': 6,
          'transaction.state.log.replication.factor': 3,
          'transaction.state.log.min.isr': 2,
          'group.initial.rebalance.delay.ms': 0,
          'group.min.session.timeout.ms': 1000,
          // A paused or dead follower leaves the ISR after 10 s (default 30 s).
          'replica.lag.time.max.ms': 10_000,
          'num.network.threads': 2,
          'num.io.threads': 2,
          'num.replica.fetchers': 1,
          'log.segment.bytes': 16_777_216,
        },
        port,
      );
    });
    this.#admin = new Kafka({ brokers: this.seeds, logLevel: logLevel.NOTHING, retry: { retries: 2 } }).admin();
  }

  static async start(): Promise<KafkaCluster> {
    const ports = [await freePort(), await freePort(), await freePort()];
    const controllers = [await freePort(), await freePort(), await freePort()];
    const cluster = new KafkaCluster(mkdtempSync(join(tmpdir(), 'busbar-kafka-cluster-')), ports, controllers);
    try {
      const id = clusterId();
      await Promise.all(cluster.nodes.map((node) => node.format(id)));
      // Together: each node's broker waits for the controller quorum, which needs two of them.
      await Promise.all(cluster.nodes.map((node) => node.start(180_000)));
      await cluster.#admin.connect();
    } catch (error) {
      await cluster.stop();
      throw error;
    }
    return cluster;
  }

  get seeds(): string[] {
    return this.#ports.map((port) => `127.0.0.1:${port}`);
  }

  /** `kafka://` with all three brokers. */
  get url(): string {
    return `kafka://${this.seeds.join(',')}`;
  }

  /** The node leading partition 0 of `topic` (asked again until the metadata answers). */
  async leaderOf(topic: string): Promise<KraftNode> {
    return this.#retry(async () => {
      const { topics } = await this.#admin.fetchTopicMetadata({ topics: [topic] });
      const leader = topics[0]?.partitions.find((p) => p.partitionId === 0)?.leader ?? -1;
      const node = this.nodes[leader - 1];
      if (node === undefined) throw new Error(`no leader for ${topic}-0`);
      return node;
    });
  }

  /** Until every partition of `topics` has all three replicas in sync (a restarted node caught up). */
  async waitInSync(topics: readonly string[], timeoutMs = 120_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const synced = await this.#admin
        .fetchTopicMetadata({ topics: [...topics] })
        .then((m) => m.topics.every((t) => t.partitions.every((p) => p.isr.length === 3 && p.leader > 0)))
        .catch(() => false);
      if (synced) return;
      if (Date.now() > deadline) throw new Error(`replicas of ${topics.join(', ')} not in sync after ${timeoutMs} ms`);
      await sleep(500);
    }
  }

  async #retry<T>(fn: () => Promise<T>, timeoutMs = 60_000): Promise<T> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      try {
        return await fn();
      } catch (error) {
        if (Date.now() > deadline) throw error;
        await sleep(300);
      }
    }
  }

  /** Stops every node (SIGCONT first: a paused one cannot exit) and removes the data. */
  async stop(): Promise<void> {
    await this.#admin.disconnect().catch(() => undefined);
    await Promise.all(this.nodes.map((node) => node.stop(20_000).catch(() => node.kill())));
    rmSync(this.#dir, { recursive: true, force: true });
  }

  tails(): string {
    return this.nodes.map((node, i) => `--- node ${i + 1}\n${node.tail(15)}`).join('\n');
  }
}
