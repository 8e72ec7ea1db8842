import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort, reachable, sleep } from '@busbar/testing';
import { type JetStreamManager, type NatsConnection, connect as natsConnect } from 'nats';

const BINARY = '/usr/sbin/nats-server';

/** Whether the cluster tests can run; with CI set, a missing nats-server is a failure, not a skip. */
export function clusterAvailable(): boolean {
  if (existsSync(BINARY)) return true;
  if (process.env.CI === 'true' || process.env.CI === '1') {
    throw new Error(`${BINARY} is missing and CI is set: install it (scripts/brokers up)`);
  }
  console.warn(`[busbar] skipping the NATS cluster tests: ${BINARY} is missing`);
  return false;
}

/** One nats-server of the cluster: its own client port, route port and JetStream file store. */
export class NatsNode {
  readonly name: string;
  readonly port: number;
  readonly conf: string;
  /** The monitoring port (`/routez`). */
  readonly monitor: number;
  #child: ChildProcess | undefined;

  constructor(name: string, port: number, conf: string, monitor: number) {
    this.name = name;
    this.port = port;
    this.conf = conf;
    this.monitor = monitor;
  }

  /** How many routes to other nodes it has up (its monitoring endpoint's `num_routes`). */
  async routes(): Promise<number> {
    const response = await fetch(`http://127.0.0.1:${this.monitor}/routez`, { signal: AbortSignal.timeout(2_000) });
    return Number(((await response.json()) as { num_routes?: unknown }).num_routes ?? 0);
  }

  get url(): string {
    return `nats://127.0.0.1:${this.port}`;
  }

  /** Starts it (again, on the same store) and waits until it takes connections. */
  async start(timeoutMs = 30_000): Promise<void> {
    const child = spawn(BINARY, ['-c', this.conf], { stdio: 'ignore' });
    this.#child = child;
    const deadline = Date.now() + timeoutMs;
    while (Date.now() < deadline) {
      if (child.exitCode !== null) throw new Error(`nats-server ${this.name} exited with ${child.exitCode}`);
      if (await reachable(this.url, 200)) return;
      await sleep(100);
    }
    throw new Error(`nats-server ${this.name} did not start within ${timeoutMs} ms`);
  }

  /** Sends `signal`; for SIGKILL and SIGTERM waits until the process is gone. */
  async signal(signal: NodeJS.Signals): Promise<void> {
    const child = this.#child;
    if (!child || child.exitCode !== null || child.signalCode !== null) return;
    if (signal === 'SIGSTOP' || signal === 'SIGCONT') {
      child.kill(signal);
      return;
    }
    const gone = new Promise<void>((resolve) => child.once('exit', () => resolve()));
    child.kill(signal);
    await gone;
  }

  /** Stopped for good (afterAll): a paused node is resumed first so that it can exit. */
  async stop(): Promise<void> {
    this.#child?.kill('SIGCONT');
    await this.signal('SIGKILL');
  }
}

/**
 * Three nats-servers with JetStream clustering on free ports (cluster routes to each other, a server_name
 * and a file store per node), in a temp dir. `admin` is a plain nats.js connection for looking at streams.
 */
export class NatsCluster {
  readonly dir: string;
  readonly nodes: readonly NatsNode[];
  #admin: NatsConnection | undefined;
  #jsm: JetStreamManager | undefined;

  private constructor(dir: string, nodes: NatsNode[]) {
    this.dir = dir;
    this.nodes = nodes;
  }

  static async start(): Promise<NatsCluster> {
    const dir = mkdtempSync(join(tmpdir(), 'busbar-nats-cluster-'));
    const ports = await Promise.all(
      [0, 1, 2].map(async () => ({ client: await freePort(), route: await freePort(), monitor: await freePort() })),
    );
    const routes = ports.map((p) => `nats-route://127.0.0.1:${p.route}`).join(', ');
    const nodes = ports.map((p, i) => {
      const name = `n${i + 1}`;
      mkdirSync(join(dir, name));
      const conf = join(dir, name, 'server.conf');
      writeFileSync(
        conf,
        [
          `server_name: ${name}`,
          `listen: 127.0.0.1:${p.client}`,
          `jetstream { store_dir: "${join(dir, name, 'js')}" }`,
          `log_file: "${join(dir, name, 'server.log')}"`,
          `http: 127.0.0.1:${p.monitor}`,
          `cluster { name: busbar, listen: 127.0.0.1:${p.route}, routes: [${routes}] }`,
          '',
        ].join('\n'),
      );
      return new NatsNode(name, p.client, conf, p.monitor);
    });
    const cluster = new NatsCluster(dir, nodes);
    try {
      await Promise.all(nodes.map((n) => n.start()));
      cluster.#admin = await natsConnect({ servers: nodes.map((n) => n.url), maxReconnectAttempts: -1 });
      cluster.#jsm = await cluster.#admin.jetstreamManager({ timeout: 5_000, checkAPI: false });
      // Ready when an R3 stream can be placed: the meta leader is elected and knows all three peers.
      await cluster.#waitFor(async () => {
        const jsm = cluster.#manager();
        await jsm.streams.add({ name: 'PROBE', subjects: ['_probe.r3'], num_replicas: 3 });
        await jsm.streams.delete('PROBE');
        return true;
      }, 60_000);
    } catch (error) {
      await cluster.stop();
      throw error;
    }
    return cluster;
  }

  /** The seed list busbar connects with: all three nodes. */
  get url(): string {
    return `nats://${this.nodes.map((n) => `127.0.0.1:${n.port}`).join(',')}`;
  }

  #manager(): JetStreamManager {
    if (!this.#jsm) throw new Error('the cluster is not started');
    return this.#jsm;
  }

  async #waitFor(check: () => Promise<boolean>, timeoutMs: number): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    let last: unknown;
    while (Date.now() < deadline) {
      try {
        if (await check()) return;
      } catch (error) {
        last = error;
      }
      await sleep(250);
    }
    throw new Error(`the NATS cluster did not settle within ${timeoutMs} ms: ${String(last ?? 'condition false')}`);
  }

  /** The node that leads `stream` (JSM streams.info().cluster.leader). */
  async leaderOf(stream: string): Promise<NatsNode> {
    let leader: NatsNode | undefined;
    await this.#waitFor(async () => {
      const name = (await this.#manager().streams.info(stream)).cluster?.leader;
      leader = this.nodes.find((n) => n.name === name);
      return leader !== undefined;
    }, 60_000);
    return leader as NatsNode;
  }

  /** Messages stored in `stream`. */
  async messages(stream: string): Promise<number> {
    return (await this.#manager().streams.info(stream)).state.messages;
  }

  /** Replica count of `stream`, from its config. */
  async replicas(stream: string): Promise<number> {
    return (await this.#manager().streams.info(stream)).config.num_replicas;
  }

  /**
   * Waits until every node has its routes to the other two up (a request that reaches a node cut off from the
   * meta leader gets no answer), and `stream` and each of its consumers have a leader and every replica is
   * current: a node that came back has caught up, so the next fault does not take the last up-to-date copy.
   */
  async waitCurrent(stream: string, timeoutMs = 90_000): Promise<void> {
    const jsm = this.#manager();
    await this.#waitFor(async () => {
      for (const node of this.nodes) if ((await node.routes()) < this.nodes.length - 1) return false;
      const info = await jsm.streams.info(stream);
      if (!healthy(info.cluster)) return false;
      for await (const c of jsm.consumers.list(stream)) if (!healthy(c.cluster)) return false;
      return true;
    }, timeoutMs);
  }

  /** The last `lines` lines (of those matching `only`) of every node's log: what the cluster did. */
  logs(lines = 60, only?: RegExp): string {
    return this.nodes
      .map((n) => {
        const file = join(this.dir, n.name, 'server.log');
        const all = existsSync(file) ? readFileSync(file, 'utf8').trimEnd().split('\n') : ['(no log)'];
        const text = (only ? all.filter((line) => only.test(line)) : all).slice(-lines).join('\n');
        return `--- ${n.name} (${n.url})\n${text}`;
      })
      .join('\n');
  }

  async stop(): Promise<void> {
    await this.#admin?.close().catch(() => undefined);
    await Promise.all(this.nodes.map((n) => n.stop()));
    rmSync(this.dir, { recursive: true, force: true });
  }
}

interface ClusterState {
  readonly leader?: string;
  readonly replicas?: readonly { readonly current: boolean; readonly offline?: boolean }[];
}

/** A leader and both other nodes current (R3 on three nodes). */
function healthy(cluster: ClusterState | undefined): boolean {
  if (!cluster?.leader) return false;
  const replicas = cluster.replicas ?? [];
  return replicas.length === 2 && replicas.every((r) => r.current && r.offline !== true);
}
