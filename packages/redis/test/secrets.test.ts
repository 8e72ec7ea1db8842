import { inspect } from 'node:util';
import { BusbarError, connect, type Logger } from '@busbar/core';
import { brokerAvailable, brokerUrls } from '@busbar/testing';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { driver, RedisIdempotencyStore } from '../src/index.js';

const ok = await brokerAvailable('redis');
const CANARY = 'Canary-Pw-7f3e9a';

/** Every rendering of an error a user or log pipeline could see. */
function renderings(error: unknown): string {
  const parts: string[] = [String(error), inspect(error, { depth: 10, showHidden: true }), JSON.stringify(error) ?? ''];
  for (let e: unknown = error, i = 0; e instanceof Error && i < 6; e = e.cause, i++)
    parts.push(e.message, e.stack ?? '', JSON.stringify(e) ?? '');
  return parts.join('\n');
}

describe.runIf(ok)('redis credentials never leak', () => {
  const logged: string[] = [];
  const logger: Logger = {
    debug: (m, f) => logged.push(m, inspect(f, { depth: 10 })),
    info: (m, f) => logged.push(m, inspect(f, { depth: 10 })),
    warn: (m, f) => logged.push(m, inspect(f, { depth: 10 })),
    error: (m, f) => logged.push(m, inspect(f, { depth: 10 })),
  };
  const printed: string[] = [];
  beforeEach(() => {
    logged.length = 0;
    printed.length = 0;
    for (const method of ['log', 'warn', 'error', 'info', 'debug'] as const) {
      vi.spyOn(console, method).mockImplementation(
        (...args: unknown[]) => void printed.push(args.map((a) => inspect(a)).join(' ')),
      );
    }
  });
  afterEach(() => {
    vi.restoreAllMocks();
  });
  const host = new URL(brokerUrls.redis).host;

  it('AUTH failure with the password in the URL (ioredis puts AUTH args in its errors)', async () => {
    const error = await connect({
      url: `redis://canary-user:${CANARY}@${host}`,
      driver,
      logger,
      connectTimeoutMs: 2_000,
    }).catch((e: unknown) => e);
    expect(BusbarError.is(error, 'BUSBAR_CONNECTION')).toBe(true);
    expect(String((error as Error).message)).toMatch(/WRONGPASS|invalid username-password/);
    expect(renderings(error)).not.toContain(CANARY);
    expect(logged.join('\n') + printed.join('\n')).not.toContain(CANARY);
  });

  it('AUTH failure with the password as an option', async () => {
    const error = await connect({
      url: `redis://canary-user@${host}`,
      password: CANARY,
      driver,
      logger,
      connectTimeoutMs: 2_000,
    }).catch((e: unknown) => e);
    expect(BusbarError.is(error, 'BUSBAR_CONNECTION')).toBe(true);
    expect(renderings(error)).not.toContain(CANARY);
    expect(logged.join('\n') + printed.join('\n')).not.toContain(CANARY);
  });

  it('a URL-encoded password and an unreachable server', async () => {
    const encoded = encodeURIComponent(`${CANARY}/@:`);
    const error = await connect({
      url: `redis://u:${encoded}@127.0.0.1:1`,
      driver,
      logger,
      connectTimeoutMs: 1_000,
    }).catch((e: unknown) => e);
    expect(BusbarError.is(error, 'BUSBAR_CONNECTION')).toBe(true);
    expect(renderings(error)).not.toContain(CANARY);
    expect(logged.join('\n') + printed.join('\n')).not.toContain(CANARY);
  });

  it('the idempotency store on an AUTH failure', async () => {
    const store = new RedisIdempotencyStore({ url: `redis://canary-user:${CANARY}@${host}`, connectTimeoutMs: 2_000 });
    const error = await store.claim('k', 1_000).catch((e: unknown) => e);
    await store.close();
    expect(BusbarError.is(error, 'BUSBAR_CONNECTION')).toBe(true);
    expect(renderings(error)).not.toContain(CANARY);
    expect(printed.join('\n')).not.toContain(CANARY);
  });
});
