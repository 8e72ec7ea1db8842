import { execFile } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { freePort } from '@busbar/testing';

const run = promisify(execFile);
const script = fileURLToPath(new URL('../../../scripts/kafka/kafka.sh', import.meta.url));

/** A private single-node Kafka (scripts/kafka/kafka.sh) on its own ports and temp dir, for tests that break it. */
export interface PrivateBroker {
  readonly port: number;
  readonly url: string;
  start(): Promise<void>;
  stop(): Promise<void>;
  /** Stops the broker and removes its data. */
  destroy(): Promise<void>;
}

export async function privateBroker(options: { port?: number; advertisePort?: number } = {}): Promise<PrivateBroker> {
  const port = options.port ?? (await freePort());
  const controllerPort = await freePort();
  const dir = await mkdtemp(join(tmpdir(), 'busbar-kafka-'));
  const args = ['--port', String(port), '--controller-port', String(controllerPort), '--dir', dir];
  if (options.advertisePort) args.push('--advertise', `127.0.0.1:${options.advertisePort}`);
  const kafka = (command: string, extra: string[]) => run('bash', [script, command, ...extra], { timeout: 120_000 });
  return {
    port,
    url: `kafka://127.0.0.1:${port}`,
    start: async () => {
      await kafka('fetch', []);
      await kafka('up', args);
    },
    stop: async () => {
      await kafka('down', ['--dir', dir]);
    },
    destroy: async () => {
      await kafka('down', ['--dir', dir]).catch(() => undefined);
      await rm(dir, { recursive: true, force: true });
    },
  };
}
