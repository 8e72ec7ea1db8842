import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { chmod, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { freePort } from '@busbar/testing';

const BIN = '/usr/lib/rabbitmq/bin';
const run = promisify(execFile);

/** Whether a private RabbitMQ node can be started here (the server is installed natively). */
export const canStartPrivateBroker = existsSync(path.join(BIN, 'rabbitmq-server'));

export interface NodeSettings {
  /** Extra rabbitmq.conf lines (`loopback_users = none` is always there). */
  readonly config?: string;
  /** The Erlang cookie (nodes of one cluster share it). Default: a fresh one per node. */
  readonly cookie?: string;
}

export interface PrivateBroker {
  readonly url: string;
  readonly node: string;
  readonly port: number;
  readonly dir: string;
  /** Runs `rabbitmqctl -n <node> ...args` (or another CLI tool by `tool`). */
  ctl(args: string[], tool?: string): Promise<string>;
  /** `rabbitmqctl stop_app` then, always, `start_app`, with `during` run while the app is down. */
  restartApp(during?: () => Promise<void>): Promise<void>;
  /** Sends a signal to the node's process group (the Erlang VM and its helpers). */
  signal(signal: NodeJS.Signals): void;
  /** Starts the node's server again on the same data (after a kill or `rabbitmqctl stop`); waits until it runs. */
  start(): Promise<void>;
  stop(): Promise<void>;
}

/** Polls `await_startup` (it fails at once while the node is not registered yet) until `deadline`. */
async function awaitStartup(ctl: PrivateBroker['ctl'], deadline: number): Promise<void> {
  for (;;) {
    try {
      await ctl(['await_startup', '--timeout', '5']);
      return;
    } catch (error) {
      if (Date.now() > deadline) throw error;
      await new Promise((resolve) => setTimeout(resolve, 500));
    }
  }
}

/**
 * A throwaway RabbitMQ node in a temp dir on free ports (AMQP and distribution), so tests that stop or break
 * the broker never disturb the shared one on 5672. Startup is bounded (90 s, RabbitMQ takes ~10 s); on a
 * failed start everything is removed again.
 */
export async function startPrivateBroker(settings: NodeSettings = {}): Promise<PrivateBroker> {
  const dir = await mkdtemp(path.join(tmpdir(), 'busbar-rmq-'));
  const [port, distPort] = [await freePort(), await freePort()];
  const node = `busbar-${process.pid}-${port}@localhost`;
  await writeFile(path.join(dir, 'enabled_plugins'), '[].\n');
  await writeFile(path.join(dir, 'rabbitmq.conf'), `loopback_users = none\n${settings.config ?? ''}\n`);
  if (settings.cookie) {
    await writeFile(path.join(dir, '.erlang.cookie'), settings.cookie);
    await chmod(path.join(dir, '.erlang.cookie'), 0o400);
  }
  const env = {
    ...process.env,
    HOME: dir,
    RABBITMQ_NODENAME: node,
    RABBITMQ_NODE_IP_ADDRESS: '127.0.0.1',
    RABBITMQ_NODE_PORT: String(port),
    RABBITMQ_DIST_PORT: String(distPort),
    RABBITMQ_MNESIA_BASE: path.join(dir, 'mnesia'),
    RABBITMQ_LOG_BASE: path.join(dir, 'log'),
    RABBITMQ_ENABLED_PLUGINS_FILE: path.join(dir, 'enabled_plugins'),
    RABBITMQ_CONFIG_FILE: path.join(dir, 'rabbitmq.conf'),
    RABBITMQ_PID_FILE: path.join(dir, 'pid'),
  };
  const ctl = async (args: string[], tool = 'rabbitmqctl') =>
    (await run(path.join(BIN, tool), ['-n', node, ...args], { env, cwd: dir, timeout: 60_000 })).stdout;
  let server: ChildProcess | undefined;
  const spawnServer = () => {
    server = spawn(path.join(BIN, 'rabbitmq-server'), [], { env, cwd: dir, stdio: 'ignore', detached: true });
    server.unref();
  };
  const signal = (name: NodeJS.Signals) => {
    try {
      if (server?.pid) process.kill(-server.pid, name);
    } catch {
      // already gone
    }
  };
  const stop = async () => {
    signal('SIGCONT');
    await ctl(['stop']).catch(() => undefined);
    signal('SIGKILL');
    await rm(dir, { recursive: true, force: true });
  };
  spawnServer();
  try {
    await awaitStartup(ctl, Date.now() + 90_000);
  } catch (error) {
    await stop();
    throw error;
  }
  return {
    url: `amqp://guest:guest@127.0.0.1:${port}`,
    node,
    port,
    dir,
    ctl,
    async restartApp(during) {
      await ctl(['stop_app']);
      try {
        await during?.();
      } finally {
        await ctl(['start_app']);
      }
    },
    signal,
    async start() {
      spawnServer();
      await awaitStartup(ctl, Date.now() + 90_000);
    },
    stop,
  };
}
