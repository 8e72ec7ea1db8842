import { type ChildProcess, spawn } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { waitFor } from '@busbar/testing';
import { Redis } from 'ioredis';
import { freePort, installed, REDIS_SERVER, startRedis, stopRedis, tempDir } from './private-redis.js';

export const MASTER_NAME = 'busbar-primary';

/** Whether the Sentinel tests can run; with CI set, a missing redis-server is a failure, not a skip. */
export function sentinelAvailable(): boolean {
  if (installed(REDIS_SERVER)) return true;
  if (process.env.CI === 'true' || process.env.CI === '1') {
    throw new Error('redis-server is missing and CI is set: `apt-get install -y redis-server`');
  }
  console.warn('[busbar] skipping Redis Sentinel tests: redis-server is missing');
  return false;
}

/** One data node: its port and process, restartable with the same directory (AOF) and port. */
export class DataNode {
  readonly port: number;
  readonly dir: string;
  #child: ChildProcess | undefined;
  constructor(port: number, dir: string) {
    this.port = port;
    this.dir = dir;
  }

  /**
   * AOF with fsync on every write: a primary killed and restarted before a failover must not come back with
   * less than it confirmed (a replica would then resync from it and drop the rest).
   */
  async start(replicaOf?: number): Promise<void> {
    const extra = ['--appendonly', 'yes', '--appendfsync', 'always', '--repl-diskless-sync', 'yes'];
    extra.push('--repl-diskless-sync-delay', '0');
    if (replicaOf !== undefined) extra.push('--replicaof', '127.0.0.1', String(replicaOf));
    this.#child = await startRedis(this.port, this.dir, extra);
  }

  signal(signal: NodeJS.Signals): void {
    this.#child?.kill(signal);
  }

  /** Resolves once the process is gone (after SIGKILL or SIGTERM). */
  async exited(): Promise<void> {
    const child = this.#child;
    if (!child || child.exitCode !== null || child.signalCode !== null) return;
    await new Promise<void>((resolve) => child.once('exit', () => resolve()));
  }

  async stop(): Promise<void> {
    if (this.#child) {
      this.#child.kill('SIGCONT');
      await stopRedis(this.#child);
    }
  }
}

/** 1 primary + 1 replica + 3 sentinels (quorum 2, down after 1 s) on free ports, in one temp dir. */
export class SentinelSetup {
  readonly nodes: DataNode[];
  readonly sentinelPorts: number[];
  readonly #sentinels: ChildProcess[] = [];
  readonly #dir: { path: string; remove(): void };

  private constructor(dir: { path: string; remove(): void }, nodes: DataNode[], sentinelPorts: number[]) {
    this.#dir = dir;
    this.nodes = nodes;
    this.sentinelPorts = sentinelPorts;
  }

  get url(): string {
    return `redis+sentinel://${this.sentinelPorts.map((p) => `127.0.0.1:${p}`).join(',')}/${MASTER_NAME}`;
  }

  static async start(): Promise<SentinelSetup> {
    const dir = tempDir('sentinel');
    const nodes: DataNode[] = [];
    const ports: number[] = [];
    const setup = new SentinelSetup(dir, nodes, ports);
    try {
      for (const name of ['a', 'b']) {
        const nodeDir = join(dir.path, name);
        mkdirSync(nodeDir);
        nodes.push(new DataNode(await freePort(), nodeDir));
      }
      const [primary, replica] = nodes as [DataNode, DataNode];
      await primary.start();
      await replica.start(primary.port);
      await setup.waitSynced();
      for (let i = 0; i < 3; i++) {
        const port = await freePort();
        ports.push(port);
        const conf = join(dir.path, `sentinel-${port}.conf`);
        writeFileSync(
          conf,
          [
            `port ${port}`,
            'bind 127.0.0.1',
            `dir ${dir.path}`,
            `sentinel monitor ${MASTER_NAME} 127.0.0.1 ${primary.port} 2`,
            `sentinel down-after-milliseconds ${MASTER_NAME} 1000`,
            `sentinel failover-timeout ${MASTER_NAME} 5000`,
            `sentinel parallel-syncs ${MASTER_NAME} 1`,
            '',
          ].join('\n'),
        );
        setup.#sentinels.push(spawn(REDIS_SERVER, [conf, '--sentinel'], { stdio: 'ignore' }));
      }
      // Every sentinel knows the others and the replica before any fault.
      for (const port of ports) {
        await waitFor(
          async () => {
            const info = await setup.#sentinel(port, ['SENTINEL', 'MASTER', MASTER_NAME]).catch(() => []);
            const fields = Object.fromEntries(pairs(info as string[]));
            return fields['num-other-sentinels'] === '2' && fields['num-slaves'] === '1';
          },
          30_000,
          `sentinel ${port} sees 2 sentinels and 1 replica`,
        );
      }
    } catch (error) {
      await setup.stop();
      throw error;
    }
    return setup;
  }

  async #sentinel(port: number, command: string[]): Promise<unknown> {
    const client = new Redis({
      port,
      host: '127.0.0.1',
      lazyConnect: true,
      maxRetriesPerRequest: 0,
      retryStrategy: () => null,
    });
    client.on('error', () => undefined); // a stopped or killed node: the probe fails, the caller retries
    try {
      await client.connect();
      return await client.call(command[0] as string, ...command.slice(1));
    } finally {
      client.disconnect();
    }
  }

  /** The data node the sentinels name as primary now. */
  async primary(): Promise<DataNode> {
    for (const port of this.sentinelPorts) {
      const addr = (await this.#sentinel(port, ['SENTINEL', 'GET-MASTER-ADDR-BY-NAME', MASTER_NAME]).catch(
        () => null,
      )) as [string, string] | null;
      const node = addr ? this.nodes.find((n) => n.port === Number(addr[1])) : undefined;
      if (node) return node;
    }
    throw new Error('no sentinel names a primary');
  }

  /** Waits until the sentinels name a primary other than `old`. */
  async waitFailover(old: DataNode): Promise<DataNode> {
    let now: DataNode | undefined;
    await waitFor(
      async () => {
        now = await this.primary().catch(() => undefined);
        return now !== undefined && now !== old;
      },
      60_000,
      'sentinel failover',
    );
    return now as DataNode;
  }

  /**
   * Waits until the current primary has one replica online; `exact`: and at the primary's offset (only
   * reachable with no writes going on: the replica reports its offset once a second).
   */
  async waitSynced(exact = true): Promise<void> {
    await waitFor(
      async () => {
        for (const node of this.nodes) {
          const info = String(await this.#sentinel(node.port, ['INFO', 'replication']).catch(() => ''));
          if (!info.includes('role:master')) continue;
          const offset = /master_repl_offset:(\d+)/.exec(info)?.[1];
          const replica = /slave0:.*state=online,offset=(\d+)/.exec(info)?.[1];
          if (offset !== undefined && replica !== undefined && (!exact || replica === offset)) return true;
        }
        return false;
      },
      60_000,
      'replica online and in sync',
    );
  }

  async stop(): Promise<void> {
    await Promise.all([...this.#sentinels.map((s) => stopRedis(s)), ...this.nodes.map((n) => n.stop())]);
    this.#dir.remove();
  }
}

function pairs(list: string[]): [string, string][] {
  const out: [string, string][] = [];
  for (let i = 0; i + 1 < list.length; i += 2) out.push([list[i] as string, list[i + 1] as string]);
  return out;
}
