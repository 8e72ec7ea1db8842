/**
 * A private Mosquitto for the scale test, on a free port (the main bench's private broker keeps its fixed
 * port to itself). Unlimited session queues (`max_queued_messages 0`): a group's backlog sits in its members'
 * session queues, and the backlog test must not lose part of it to Mosquitto's default of 1000.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { sleep } from './util.js';

export interface Mosquitto {
  readonly url: string;
  /** The broker's resident memory, MB (where an MQTT backlog lives with `persistence false`). */
  rssMb(): number;
  stop(): Promise<void>;
}

function rssOf(pid: number | undefined): number {
  const kb = /VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1];
  return Math.round(Number(kb) / 1024);
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as net.AddressInfo;
      server.close(() => resolve(port));
    });
  });
}

function answers(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect({ host: '127.0.0.1', port });
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
}

export async function startMosquitto(): Promise<Mosquitto> {
  const port = await freePort();
  const dir = mkdtempSync(path.join(os.tmpdir(), 'busbar-scale-mosquitto-'));
  const config = path.join(dir, 'mosquitto.conf');
  // set_tcp_nodelay: QoS 1 with many in flight collapses without it (as in bench/mqtt.ts).
  writeFileSync(
    config,
    `listener ${port} 127.0.0.1
allow_anonymous true
set_tcp_nodelay true
max_inflight_messages 100
max_queued_messages 0
persistence false
`,
  );
  const child: ChildProcess = spawn('mosquitto', ['-c', config], { stdio: 'ignore' });
  const failed = new Promise<boolean>((resolve) => child.once('error', () => resolve(false)));
  const stop = async () => {
    child.kill('SIGTERM');
    rmSync(dir, { recursive: true, force: true });
  };
  for (let i = 0; i < 50; i++) {
    if (await Promise.race([answers(port), failed])) {
      return { url: `mqtt://127.0.0.1:${port}`, rssMb: () => rssOf(child.pid), stop };
    }
    await sleep(100);
  }
  await stop();
  throw new Error('mosquitto did not start (is it installed?)');
}
