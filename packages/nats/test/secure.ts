import { existsSync } from 'node:fs';
import { inspect } from 'node:util';
import { type Bus, BusbarError, connect, type Logger } from '@busbar/core';
import { collect, opensslAvailable, uniqueName } from '@busbar/testing';
import { expect } from 'vitest';
import { driver } from '../src/index.js';

const hasServer = existsSync('/usr/sbin/nats-server');

/** Whether the private-server security tests can run; with CI set, a missing binary is a failure, not a skip. */
export function secureServersAvailable(): boolean {
  const openssl = opensslAvailable();
  if (hasServer && openssl) return true;
  const missing = hasServer ? 'openssl' : '/usr/sbin/nats-server';
  if (process.env.CI === 'true' || process.env.CI === '1') {
    throw new Error(`${missing} is missing and CI is set: install it (scripts/brokers up)`);
  }
  console.warn(`[busbar] skipping the NATS security tests: ${missing} is missing`);
  return false;
}

/** `tls { ... }` for a private server: its certificate, the CA that signs clients, and whether it checks them. */
export function tlsBlock(cert: { cert: string; key: string }, ca: string, verify: boolean): string {
  // A generous handshake timeout: the machine is shared and a slow handshake is not what these tests check.
  return `tls { cert_file: "${cert.cert}", key_file: "${cert.key}", ca_file: "${ca}", verify: ${verify}, timeout: 10 }`;
}

/** Every log line of the buses these tests open, to check that no secret reaches a log. */
export const logLines: string[] = [];

const recording: Logger = {
  debug: (message, fields) => logLines.push(inspect({ message, fields }, { depth: 10 })),
  info: (message, fields) => logLines.push(inspect({ message, fields }, { depth: 10 })),
  warn: (message, fields) => logLines.push(inspect({ message, fields }, { depth: 10 })),
  error: (message, fields) => logLines.push(inspect({ message, fields }, { depth: 10 })),
};

export function open(url: string, options: Record<string, unknown> = {}): Promise<Bus> {
  return connect({ url, driver, logger: recording, connectTimeoutMs: 5_000, ...options });
}

/** Publishes one message to a fresh topic and reads it back through a group. */
export async function roundTrip(bus: Bus, prefix = 'sec'): Promise<void> {
  const topic = `${uniqueName(prefix)}.t`;
  const got = collect<string>();
  const sub = await bus.subscribe<string>(topic, async (m) => got.push(m.payload), { group: 'g' });
  try {
    await bus.publish(topic, 'hello');
    await got.waitForCount(1, 10_000);
    expect(got.items).toEqual(['hello']);
  } finally {
    await sub.close();
  }
}

export interface Failure {
  readonly error: BusbarError;
  readonly ms: number;
}

/** The error `action` rejects with (it must be a BusbarError) and how long it took. */
export async function failure(action: () => Promise<unknown>): Promise<Failure> {
  const started = Date.now();
  let caught: unknown;
  try {
    const value = await action();
    if (value !== null && typeof value === 'object' && 'close' in value) await (value as Bus).close();
  } catch (error) {
    caught = error;
  }
  const ms = Date.now() - started;
  if (!BusbarError.is(caught)) throw new Error(`expected a BusbarError, got ${inspect(caught)}`);
  return { error: caught, ms };
}

// The checks every driver's security tests share, under the names these tests use.
export { expectFatal as expectRefused, expectNoSecret as expectNoSecrets } from '@busbar/testing';
