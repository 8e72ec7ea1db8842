import { randomBytes } from 'node:crypto';
import { sleep } from '@busbar/testing';
import { canStartPrivateBroker, type PrivateBroker, startPrivateBroker } from './private-broker.js';

export const clusterAvailable = (): boolean => canStartPrivateBroker;

interface QueueInfo {
  name: string;
  leader?: string;
  members?: string[];
  online?: string[];
}

/**
 * Three RabbitMQ nodes on one machine (own node names, AMQP and distribution ports, data dirs; one Erlang
 * cookie through each node's HOME), clustered with `rabbitmqctl join_cluster`. Nodes start in parallel
 * (~10 s each, more on a busy machine); a failed start stops whatever did start.
 */
export class RabbitCluster {
  readonly nodes: readonly PrivateBroker[];

  private constructor(nodes: readonly PrivateBroker[]) {
    this.nodes = nodes;
  }

  static async start(): Promise<RabbitCluster> {
    const cookie = randomBytes(20).toString('hex').toUpperCase();
    const started = await Promise.allSettled([0, 1, 2].map(() => startPrivateBroker({ cookie })));
    const nodes = started.flatMap((s) => (s.status === 'fulfilled' ? [s.value] : []));
    const cluster = new RabbitCluster(nodes);
    try {
      const failed = started.find((s) => s.status === 'rejected');
      if (failed) throw failed.reason;
      const [first, ...rest] = nodes as [PrivateBroker, ...PrivateBroker[]];
      for (const node of rest) {
        await node.ctl(['stop_app']);
        await node.ctl(['join_cluster', first.node]);
        await node.ctl(['start_app']);
      }
      await cluster.#awaitRunning(3, 60_000);
    } catch (error) {
      await cluster.stop();
      throw error;
    }
    return cluster;
  }

  /** `amqp://guest:guest@127.0.0.1:p1,127.0.0.1:p2,127.0.0.1:p3`: busbar's cluster URL. */
  get url(): string {
    return `amqp://guest:guest@${this.nodes.map((n) => `127.0.0.1:${n.port}`).join(',')}`;
  }

  byName(node: string): PrivateBroker {
    const found = this.nodes.find((n) => n.node === node);
    if (!found) throw new Error(`no node ${node} in this cluster`);
    return found;
  }

  /** A queue's leader, members and online members, asked of any running node. */
  async queue(name: string, skip?: PrivateBroker): Promise<QueueInfo> {
    let last: unknown;
    for (const node of this.nodes) {
      if (node === skip) continue;
      try {
        const out = await node.ctl(['list_queues', '-q', 'name', 'leader', 'members', 'online', '--formatter', 'json']);
        const found = (JSON.parse(out) as QueueInfo[]).find((q) => q.name === name);
        if (found) return found;
        last = new Error(`queue ${name} not found`);
      } catch (error) {
        last = error;
      }
    }
    throw last;
  }

  /** The node that leads the quorum queue `name`. */
  async leaderOf(name: string): Promise<PrivateBroker> {
    const info = await this.queue(name);
    if (!info.leader) throw new Error(`queue ${name} has no leader: ${JSON.stringify(info)}`);
    return this.byName(info.leader);
  }

  /** `<on node> of <all>` client connections of the cluster (by the server port they connected to). */
  async connectionsOn(node: PrivateBroker): Promise<string> {
    const other = this.nodes.find((n) => n !== node) as PrivateBroker;
    const out = await other.ctl(['list_connections', '-q', 'port', '--formatter', 'json']);
    const all = JSON.parse(out) as { port: number }[];
    return `${all.filter((c) => c.port === node.port).length} of ${all.length}`;
  }

  /** Waits until every member of the quorum queue `name` is online again (bounded). */
  async awaitQueueOnline(name: string, timeoutMs = 90_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const info = await this.queue(name).catch(() => undefined);
      if (info?.online?.length === 3 && info.leader) return;
      if (Date.now() > deadline) throw new Error(`queue ${name} not fully online: ${JSON.stringify(info)}`);
      await sleep(500);
    }
  }

  async #awaitRunning(count: number, timeoutMs: number): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const out = await (this.nodes[0] as PrivateBroker)
        .ctl(['cluster_status', '--formatter', 'json'])
        .catch(() => '{}');
      const running = (JSON.parse(out) as { running_nodes?: string[] }).running_nodes ?? [];
      if (running.length >= count) return;
      if (Date.now() > deadline) throw new Error(`cluster did not form: running ${running.join(', ')}`);
      await sleep(500);
    }
  }

  async stop(): Promise<void> {
    await Promise.all(this.nodes.map((n) => n.stop()));
  }
}
