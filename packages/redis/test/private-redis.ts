import { type ChildProcess, execFile, execFileSync, spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { reachable, waitFor } from '@busbar/testing';
import { Redis } from 'ioredis';

/** Helpers for tests that need their own redis-server (AOF restarts, a cluster): never the shared one. */
export const REDIS_SERVER = 'redis-server';
export const REDIS_CLI = 'redis-cli';

/** True when `command` is on the PATH (checked with `--version`). */
export function installed(command: string): boolean {
  try {
    execFileSync(command, ['--version'], { stdio: 'ignore', timeout: 5_000 });
    return true;
  } catch {
    return false;
  }
}

function portFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const srv = net.createServer();
    srv.once('error', () => resolve(false));
    srv.listen(port, '127.0.0.1', () => srv.close(() => resolve(true)));
  });
}

/** A free port whose cluster bus port (+10000) is free too. */
export async function freePort(): Promise<number> {
  for (;;) {
    const port = 20_000 + Math.floor(Math.random() * 25_000);
    if ((await portFree(port)) && (await portFree(port + 10_000))) return port;
  }
}

export async function startRedis(port: number, dir: string, extra: string[] = []): Promise<ChildProcess> {
  const args = [
    '--port',
    String(port),
    '--bind',
    '127.0.0.1',
    '--save',
    '',
    '--dir',
    dir,
    '--daemonize',
    'no',
    ...extra,
  ];
  const child = spawn(REDIS_SERVER, args, { stdio: 'ignore' });
  // 30 s, not 10: a primary restarted as a replica with an fsync-always AOF, on 2 cores shared with the other
  // suites, once took longer than 10 s to answer PING in CI (LOADING while it reads its AOF and syncs).
  await waitFor(() => reachable(`redis://127.0.0.1:${port}`, 200), 30_000, 'private redis-server up');
  // Accepting TCP is not yet serving (AOF loading answers LOADING): wait for a PING.
  const probe = new Redis({
    port,
    host: '127.0.0.1',
    lazyConnect: true,
    maxRetriesPerRequest: 0,
    retryStrategy: () => null,
  });
  await waitFor(async () => (await probe.ping().catch(() => '')) === 'PONG', 30_000, 'redis-server ready');
  probe.disconnect();
  return child;
}

/** SIGTERM: Redis shuts down cleanly, flushing and fsyncing its AOF. */
export async function stopRedis(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  child.kill('SIGTERM');
  await exited;
}

export interface PrivateCluster {
  readonly ports: readonly number[];
  stop(): Promise<void>;
}

/** Three masters, no replicas, all slots assigned; about a second to start. */
export async function startCluster(): Promise<PrivateCluster> {
  const dir = mkdtempSync(join(tmpdir(), 'busbar-redis-cluster-'));
  const ports: number[] = [];
  const children: ChildProcess[] = [];
  const stop = async () => {
    await Promise.all(children.map((c) => stopRedis(c)));
    rmSync(dir, { recursive: true, force: true });
  };
  try {
    for (let i = 0; i < 3; i++) {
      const port = await freePort();
      ports.push(port);
      const clusterArgs = [
        '--cluster-enabled',
        'yes',
        '--cluster-config-file',
        `nodes-${port}.conf`,
        '--appendonly',
        'no',
      ];
      children.push(await startRedis(port, dir, clusterArgs));
    }
    const nodes = ports.map((p) => `127.0.0.1:${p}`);
    await promisify(execFile)(REDIS_CLI, ['--cluster', 'create', ...nodes, '--cluster-replicas', '0', '--cluster-yes']);
    for (const port of ports) {
      const probe = new Redis({ port, host: '127.0.0.1' });
      await waitFor(
        async () => String(await probe.call('CLUSTER', 'INFO')).includes('cluster_state:ok'),
        10_000,
        'cluster ok',
      );
      probe.disconnect();
    }
  } catch (error) {
    await stop();
    throw error;
  }
  return { ports, stop };
}

export function tempDir(label: string): { path: string; remove(): void } {
  const path = mkdtempSync(join(tmpdir(), `busbar-redis-${label}-`));
  return { path, remove: () => rmSync(path, { recursive: true, force: true }) };
}
