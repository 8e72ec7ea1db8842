import { execFile } from 'node:child_process';
import net from 'node:net';
import { fileURLToPath } from 'node:url';
import { type Bus, BusbarError, connect, silentLogger } from '@busbar/core';
import { brokerAvailable, collect, createFaultProxy, type FaultProxy, freePort, uniqueName } from '@busbar/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { driver } from '../src/index.js';
import { type PrivateBroker, privateBroker } from './private-broker.js';

// Needs java and the Kafka jars (scripts/kafka/kafka.sh fetch); the shared broker being up says they are there.
const ok = await brokerAvailable('kafka');

/** Rejects with the error, or fails the test if `promise` resolves; returns how long it took. */
async function rejection(promise: Promise<unknown>): Promise<{ error: unknown; ms: number }> {
  const started = Date.now();
  try {
    await promise;
  } catch (error) {
    return { error, ms: Date.now() - started };
  }
  throw new Error('expected a rejection');
}

describe('kafka connect bounds', () => {
  it('connect() to a port that accepts and never answers rejects, typed, within connectTimeoutMs', async () => {
    const silent = net.createServer(() => undefined);
    await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve));
    const port = (silent.address() as net.AddressInfo).port;
    try {
      const { error, ms } = await rejection(
        connect({ url: `kafka://127.0.0.1:${port}`, driver, logger: silentLogger, connectTimeoutMs: 1_500 }),
      );
      expect(BusbarError.is(error, 'BUSBAR_CONNECTION') || BusbarError.is(error, 'BUSBAR_TIMEOUT')).toBe(true);
      expect((error as BusbarError).retryable).toBe(true);
      // Bounded by connectTimeoutMs, not kafkajs' own retries (10 s and more); slack for a loaded machine.
      expect(ms).toBeLessThan(4_000);
    } finally {
      silent.close();
    }
  }, 15_000);

  it('a process whose connect() failed ends on its own soon after (no kafkajs timers or sockets left)', async () => {
    const port = await freePort();
    const fixture = (name: string) => fileURLToPath(new URL(`./fixtures/${name}`, import.meta.url));
    const { stdout, exitedAt } = await new Promise<{ stdout: string; exitedAt: number }>((resolve, reject) => {
      execFile(
        process.execPath,
        [
          '--conditions=source',
          '--import',
          fixture('ts-hooks.mjs'),
          fixture('connect-and-idle.ts'),
          `kafka://127.0.0.1:${port}`,
        ],
        { timeout: 20_000 },
        (error, out) => (error ? reject(error) : resolve({ stdout: out, exitedAt: Date.now() })),
      );
    });
    const match = /rejected (\d+) (\w+) (\d+)/.exec(stdout);
    expect(match?.[2]).toBe('ConnectionError');
    // Issue 19: the process ended about 10 s after the rejection; now within 2 s (the exit itself is in it).
    expect(exitedAt - Number(match?.[3])).toBeLessThan(2_000);
  }, 30_000);
});

describe.runIf(ok)('kafka timeouts while the broker is down (private broker behind a fault proxy)', () => {
  let proxy: FaultProxy;
  let broker: PrivateBroker;
  let url: string;
  const buses: Bus[] = [];
  const open = async (options: { publishTimeoutMs?: number; closeTimeoutMs?: number } = {}) => {
    const bus = await connect({ url, driver, logger: silentLogger, ...options });
    buses.push(bus);
    return bus;
  };

  beforeAll(async () => {
    // The broker advertises the proxy, so every client connection (after bootstrap too) goes through it.
    const brokerPort = await freePort();
    proxy = await createFaultProxy({ target: { host: '127.0.0.1', port: brokerPort } });
    broker = await privateBroker({ advertisePort: proxy.port, port: brokerPort });
    await broker.start();
    url = proxy.url('kafka://127.0.0.1:9092');
  }, 150_000);

  afterAll(async () => {
    proxy?.blackhole(false);
    await Promise.all(buses.map((bus) => bus.close().catch(() => undefined)));
    await proxy?.close();
    await broker?.destroy();
  }, 60_000);

  /** The broker answers again; connections left silent by the blackhole are reset (as TCP would, later). */
  const heal = () => {
    proxy.blackhole(false);
    proxy.cutAll();
  };

  it('publish() honours publishTimeoutMs for a new topic (creation) and a known one, then works again', async () => {
    const bus = await open({ publishTimeoutMs: 2_000 });
    const known = uniqueName('known');
    await bus.publish(known, 'warm');
    proxy.blackhole(true);
    try {
      for (const topic of [uniqueName('never-used'), known]) {
        const { error, ms } = await rejection(bus.publish(topic, 'lost?'));
        expect(BusbarError.is(error, 'BUSBAR_TIMEOUT')).toBe(true);
        expect((error as BusbarError).retryable).toBe(true);
        // publishTimeoutMs, not kafkajs' 30 s request timeout; slack for a loaded machine.
        expect(ms).toBeLessThan(4_500);
      }
    } finally {
      heal();
    }
    const topic = uniqueName('after');
    const got = collect<string>();
    await bus.subscribe<string>(topic, async (m) => got.push(m.payload), { group: uniqueName('g') });
    await bus.publish(topic, 'back');
    await got.waitForCount(1, 20_000);
    expect(got.items).toEqual(['back']);
  }, 60_000);

  it('close() honours closeTimeoutMs while the broker is silent, with a subscription and a publish in flight', async () => {
    const bus = await open({ closeTimeoutMs: 2_000, publishTimeoutMs: 60_000 });
    const topic = uniqueName('closing');
    await bus.subscribe(topic, async () => undefined, { group: uniqueName('g') });
    await bus.publish(topic, 'one');
    proxy.blackhole(true);
    try {
      const inFlight = bus.publish(topic, 'two').catch((error: unknown) => error);
      const started = Date.now();
      await bus.close();
      // closeTimeoutMs plus core's short grace for the disconnect (not the 10 s default); slack for load.
      expect(Date.now() - started).toBeLessThan(4_500);
      // The publish caught by the close settles too (typed), long before its publish timeout. (Within the
      // driver's close bound: closeTimeoutMs once core passes it to drivers, else the 10 s default.)
      const settled = await Promise.race([inFlight, new Promise((resolve) => setTimeout(resolve, 11_000, 'hung'))]);
      expect(settled === undefined || BusbarError.is(settled)).toBe(true);
    } finally {
      heal();
    }
    // Another bus on the same broker works.
    const other = await open();
    const got = collect<string>();
    const next = uniqueName('next');
    await other.subscribe<string>(next, async (m) => got.push(m.payload), { group: uniqueName('g') });
    await other.publish(next, 'fine');
    await got.waitForCount(1, 20_000);
  }, 60_000);
});
