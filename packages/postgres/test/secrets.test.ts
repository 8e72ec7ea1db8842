import { inspect } from 'node:util';
import { BusbarError, connect, silentLogger } from '@busbar/core';
import { brokerAvailable, uniqueName } from '@busbar/testing';
import { describe, expect, it } from 'vitest';
import { createRelay, PostgresIdempotencyStore } from '../src/index.js';

const ok = await brokerAvailable('postgres');
// '/', '@' and '%' as users' passwords have them: percent-encoded in the URL, and neither form may show.
const CANARY = 'busbar-canary/secret@9%';
const ENCODED = encodeURIComponent(CANARY);

function expectNoSecret(error: unknown): void {
  const texts = [String(error), (error as Error).stack ?? '', inspect(error, { depth: 10 }), JSON.stringify(error)];
  for (let cause = (error as Error).cause; cause; cause = (cause as Error).cause) {
    texts.push(String(cause), (cause as Error).stack ?? '', inspect(cause, { depth: 10 }));
  }
  for (const text of texts) {
    expect(text).not.toContain(CANARY);
    expect(text).not.toContain(ENCODED);
  }
}

describe.runIf(ok)('connection errors never show the password', () => {
  // Nothing listens on port 1: the connection is refused.
  const url = `postgres://postgres:${ENCODED}@127.0.0.1:1/test`;

  it('idempotency store', async () => {
    const store = new PostgresIdempotencyStore({ url });
    try {
      const error = await store.claim('k', 1_000).catch((e: unknown) => e);
      expect(BusbarError.is(error, 'BUSBAR_CONNECTION')).toBe(true);
      expect((error as Error).message).toContain('postgres://postgres:***@127.0.0.1:1/test');
      expectNoSecret(error);
      for (const text of [inspect(store), JSON.stringify(store)]) {
        expect(text).not.toContain(CANARY);
        expect(text).not.toContain(ENCODED);
      }
    } finally {
      await store.close();
    }
  });

  it('relay (drain and the events of a running relay)', async () => {
    const bus = await connect({ url: `memory://${uniqueName('sec')}`, logger: silentLogger });
    const relay = createRelay({ url, bus, pollIntervalMs: 50 });
    try {
      const error = await relay.drain().catch((e: unknown) => e);
      expect(BusbarError.is(error, 'BUSBAR_CONNECTION')).toBe(true);
      expectNoSecret(error);
    } finally {
      await bus.close();
    }
  });

  it('a bad URL is a ConfigError without the password', () => {
    const error = (() => {
      try {
        new PostgresIdempotencyStore({ url: `mysql://root:${ENCODED}@db/x` });
      } catch (e) {
        return e;
      }
    })();
    expect(BusbarError.is(error, 'BUSBAR_CONFIG')).toBe(true);
    expectNoSecret(error);
  });
});
