import { inspect } from 'node:util';
import { type Bus, BusbarError, type ConnectOptions, connect, silentLogger } from '@busbar/core';
import { expect } from 'vitest';
import { uniqueName } from './brokers.js';
import { collect, waitFor } from './wait.js';

/** Every text an error shows: message, stack, `inspect`, JSON, and the same for its cause chain. */
export function errorTexts(error: unknown): string {
  const parts: string[] = [];
  let current: unknown = error;
  for (let depth = 0; depth < 6 && current instanceof Error; depth++) {
    parts.push(current.message, String(current.stack));
    current = current.cause;
  }
  parts.push(inspect(error, { depth: 10, showHidden: true }), JSON.stringify(error) ?? '');
  return parts.join('\n');
}

/** Asserts that none of `secrets` (as given and URL-encoded) appears anywhere `error` can show. */
export function expectNoSecret(error: unknown, secrets: readonly string[]): void {
  const text = errorTexts(error);
  for (const secret of secrets) {
    expect(text).not.toContain(secret);
    expect(text).not.toContain(encodeURIComponent(secret));
  }
}

/** The base64 lines of a PEM private key (or any PEM): none of them may show anywhere. */
export function pemLines(pem: string): string[] {
  return pem.split('\n').filter((line) => line.length > 20 && !line.startsWith('-----'));
}

export interface ConnectFailure {
  readonly error: BusbarError;
  /** How long `connect()` took to fail. */
  readonly ms: number;
}

/**
 * A `connect()` that must fail: its error and how long it took. `connectTimeoutMs` defaults to 20 s, so a failure
 * well before it shows the driver gave up at once (bad credentials, an untrusted certificate) instead of
 * reconnecting until the timeout.
 */
export async function failedConnect(options: ConnectOptions): Promise<ConnectFailure> {
  const started = Date.now();
  const result = await connect({ logger: silentLogger, connectTimeoutMs: 20_000, ...options }).then(
    async (bus) => {
      await bus.close();
      return new Error('connected although it must not');
    },
    (error: unknown) => error,
  );
  expect(BusbarError.is(result), String(result)).toBe(true);
  return { error: result as BusbarError, ms: Date.now() - started };
}

/**
 * A connect failure that no retry can fix (TLS, authentication): a ConnectionError that is not retryable, whose
 * message matches `why`, that came within `withinMs` (default 10 s) and shows none of `secrets`.
 */
export function expectFatal(failure: ConnectFailure, why: RegExp, secrets: readonly string[], withinMs = 10_000): void {
  expect(failure.error.code, failure.error.message).toBe('BUSBAR_CONNECTION');
  expect(failure.error.retryable, failure.error.message).toBe(false);
  expect(failure.error.message).toMatch(why);
  expect(failure.ms).toBeLessThan(withinMs);
  expectNoSecret(failure.error, secrets);
}

/** A confirmed publish that a new group member receives, on a fresh topic (under `prefix` when given). */
export async function roundTrip(bus: Bus, prefix = 'sec'): Promise<void> {
  const topic = `${prefix}.${uniqueName('t')}`;
  const got = collect<string>();
  await bus.subscribe(topic, async (m) => void got.push(m.id), { group: 'g' });
  const id = await bus.publish(topic, { ok: true });
  await waitFor(() => got.items.includes(id), 15_000, 'the round trip');
}
