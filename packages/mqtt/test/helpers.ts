import { type ChildProcess, spawn } from 'node:child_process';
import { chmodSync, existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type Bus, connect as connectBus, silentLogger } from '@busbar/core';
import { brokerUrls, freePort, sleep } from '@busbar/testing';
import mqtt, { type IPublishPacket, type MqttClient } from 'mqtt';
import { driver } from '../src/index.js';

export function openBus(options: Record<string, unknown> = {}): Promise<Bus> {
  return connectBus({ url: brokerUrls.mqtt, driver, logger: silentLogger, ...options });
}

/** A raw mqtt.js client (MQTT 5) for looking at what busbar put on the wire. */
export async function rawClient(url = brokerUrls.mqtt): Promise<{ client: MqttClient; packets: IPublishPacket[] }> {
  const client = await mqtt.connectAsync(url, { protocolVersion: 5 });
  const packets: IPublishPacket[] = [];
  client.on('message', (_topic, _payload, packet) => packets.push(packet));
  return { client, packets };
}

/** A private Mosquitto with persistence on, in a temp dir, on its own port; never the shared broker. */
export class PrivateMosquitto {
  readonly dir = mkdtempSync(join(tmpdir(), 'busbar-mqtt-'));
  port = 0;
  #proc: ChildProcess | undefined;

  get url(): string {
    return `mqtt://127.0.0.1:${this.port}`;
  }

  #extra: string[] = [];

  /** Starts (or restarts, with the same settings) the broker; `extra` config lines are kept for restarts. */
  async start(extra?: string[]): Promise<void> {
    if (extra) this.#extra = extra;
    if (this.port === 0) this.port = await freePort();
    // Started as root, Mosquitto drops to its own user: without this it cannot write its persistence file.
    chmodSync(this.dir, 0o777);
    const conf = join(this.dir, 'mosquitto.conf');
    writeFileSync(
      conf,
      [
        `listener ${this.port} 127.0.0.1`,
        'allow_anonymous true',
        'persistence true',
        `persistence_location ${this.dir}/`,
        'set_tcp_nodelay true',
        'max_queued_messages 20000',
        'log_dest none',
        ...this.#extra,
        '',
      ].join('\n'),
    );
    this.#proc = spawn('/usr/sbin/mosquitto', ['-c', conf], { stdio: 'ignore' });
    // Generous: a loaded machine, or a big persistence file to load after a restart.
    for (let i = 0; i < 400; i++) {
      if (await reachable(this.port)) return;
      await sleep(50);
    }
    throw new Error('private mosquitto did not start within 20 s');
  }

  /** SIGHUP: Mosquitto reloads its configuration, the ACL file included. */
  reload(): void {
    this.#proc?.kill('SIGHUP');
  }

  /** SIGTERM: Mosquitto writes its persistence file on a clean shutdown. */
  async stop(): Promise<void> {
    const proc = this.#proc;
    this.#proc = undefined;
    if (!proc || proc.exitCode !== null) return;
    await new Promise<void>((resolve) => {
      proc.once('exit', () => resolve());
      proc.kill('SIGTERM');
    });
  }

  /** SIGKILL: a crash; Mosquitto keeps only what its last autosave wrote. */
  async kill(): Promise<void> {
    const proc = this.#proc;
    this.#proc = undefined;
    if (!proc || proc.exitCode !== null) return;
    await new Promise<void>((resolve) => {
      proc.once('exit', () => resolve());
      proc.kill('SIGKILL');
    });
  }

  async destroy(): Promise<void> {
    await this.stop();
    rmSync(this.dir, { recursive: true, force: true });
  }
}

function reachable(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect(port, '127.0.0.1');
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
  });
}

const hasMosquitto = existsSync('/usr/sbin/mosquitto');

/** Whether the private-broker tests can run; with CI set, a missing Mosquitto is a failure, not a skip. */
export function privateBrokerAvailable(): boolean {
  if (hasMosquitto) return true;
  if (process.env.CI === 'true' || process.env.CI === '1') {
    throw new Error('/usr/sbin/mosquitto is missing and CI is set: install it with `scripts/brokers up`');
  }
  console.warn('[busbar] skipping private Mosquitto tests: /usr/sbin/mosquitto is missing');
  return false;
}
