import { execFile, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { freePort } from '@busbar/testing';

const BIN = '/usr/lib/rabbitmq/bin';
const run = promisify(execFile);

/** Whether a private RabbitMQ node can be started here (the server is installed natively). */
export const canStartPrivateBroker = existsSync(path.join(BIN, 'rabbitmq-server'));

export interface PrivateBroker {
  readonly url: string;
  readonly node: string;
  /** `rabbitmqctl stop_app` then, always, `start_app`, with `during` run while the app is down. */
  restartApp(during?: () => Promise<void>): Promise<void>;
  stop(): Promise<void>;
}

/**
 * A throwaway RabbitMQ node in a temp dir on free ports, so tests that stop
 * the broker's app never disturb the shared one on 5672.
 */
export async function startPrivateBroker(): Promise<PrivateBroker> {
  const dir = await mkdtemp(path.join(tmpdir(), 'busbar-rmq-'));
  const [port, distPort] = [await freePort(), await freePort()];
  const node = `busbar-${process.pid}-${port}@localhost`;
  await writeFile(path.join(dir, 'enabled_plugins'), '[].\n');
  await writeFile(path.join(dir, 'rabbitmq.conf'), 'loopback_users = none\n');
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
  const ctl = (...args: string[]) =>
    run(path.join(BIN, 'rabbitmqctl'), ['-n', node, ...args], { env, cwd: dir, timeout: 60_000 });
  const server = spawn(path.join(BIN, 'rabbitmq-server'), [], { env, cwd: dir, stdio: 'ignore', detached: true });
  server.unref();
  const stop = async () => {
    await ctl('stop').catch(() => undefined);
    try {
      if (server.pid) process.kill(-server.pid, 'SIGKILL');
    } catch {
      // already gone
    }
    await rm(dir, { recursive: true, force: true });
  };
  // await_startup fails at once while the node is not registered yet: poll it.
  for (const deadline = Date.now() + 90_000; ; ) {
    try {
      await ctl('await_startup', '--timeout', '5');
      break;
    } catch (error) {
      if (Date.now() > deadline) {
        await stop();
        throw error;
      }
      await new Promise((resolve) => setTimeout(resolve, 500));
    }
  }
  return {
    url: `amqp://guest:guest@127.0.0.1:${port}`,
    node,
    async restartApp(during) {
      await ctl('stop_app');
      try {
        await during?.();
      } finally {
        await ctl('start_app');
      }
    },
    stop,
  };
}
