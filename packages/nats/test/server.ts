import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort, reachable, sleep } from '@busbar/testing';

/** A private nats-server with JetStream on a file store in a temp dir, for tests that stop or reconfigure it. */
export interface PrivateServer {
  readonly url: string;
  readonly port: number;
  start(): Promise<void>;
  /** SIGTERM, then waits for exit (the file store is kept). */
  stop(): Promise<void>;
  /** Stops it and removes the store. */
  destroy(): Promise<void>;
  /** SIGSTOP / SIGCONT it, or SIGKILL it and wait for the exit (the file store is kept). */
  signal(signal: 'SIGSTOP' | 'SIGCONT' | 'SIGKILL'): Promise<void>;
}

export async function privateServer(config = ''): Promise<PrivateServer> {
  const port = await freePort();
  const dir = mkdtempSync(join(tmpdir(), 'busbar-nats-'));
  const conf = join(dir, 'server.conf');
  writeFileSync(conf, `listen: 127.0.0.1:${port}\njetstream { store_dir: "${join(dir, 'js')}" }\n${config}\n`);
  const url = `nats://127.0.0.1:${port}`;
  let child: ChildProcess | undefined;
  const start = async () => {
    child = spawn('/usr/sbin/nats-server', ['-c', conf], { stdio: 'ignore' });
    for (let i = 0; i < 100; i++) {
      if (await reachable(url, 200)) return;
      await sleep(50);
    }
    throw new Error(`private nats-server on ${port} did not start`);
  };
  const stop = async () => {
    const c = child;
    child = undefined;
    if (!c || c.exitCode !== null) return;
    await new Promise<void>((resolve) => {
      c.once('exit', () => resolve());
      c.kill('SIGTERM');
    });
  };
  const signal = async (name: 'SIGSTOP' | 'SIGCONT' | 'SIGKILL') => {
    const c = child;
    if (!c || c.exitCode !== null) return;
    if (name !== 'SIGKILL') {
      c.kill(name);
      return;
    }
    child = undefined;
    await new Promise<void>((resolve) => {
      c.once('exit', () => resolve());
      c.kill(name);
    });
  };
  await start();
  return {
    url,
    port,
    start,
    stop,
    signal,
    destroy: async () => {
      await stop();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
