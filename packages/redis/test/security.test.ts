import { inspect } from 'node:util';
import { type Bus, BusbarError, connect, type Logger, type Message } from '@busbar/core';
import { collect, expectNoSecret, pemLines, uniqueName } from '@busbar/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { driver, RedisIdempotencyStore } from '../src/index.js';
import {
  ACL_PASSWORD,
  ACL_USER,
  KEY_PREFIX,
  type SecureRedis,
  secureRedisAvailable,
  startSecureRedis,
} from './secure-redis.js';

const ok = secureRedisAvailable();
/** Generous for a busy machine, and far below what an endless reconnect loop would take. */
const CONNECT_TIMEOUT_MS = 10_000;
const FAIL_FAST_MS = 5_000;

describe.runIf(ok)('redis TLS, mTLS and ACLs (private redis-servers)', () => {
  let servers: SecureRedis;
  let good: Bus;
  const logged: string[] = [];
  const logger: Logger = {
    debug: (m, f) => logged.push(m, inspect(f, { depth: 10 })),
    info: (m, f) => logged.push(m, inspect(f, { depth: 10 })),
    warn: (m, f) => logged.push(m, inspect(f, { depth: 10 })),
    error: (m, f) => logged.push(m, inspect(f, { depth: 10 })),
  };
  let secrets: string[];

  const url = (port: number, password = ACL_PASSWORD) =>
    `rediss://${ACL_USER}:${encodeURIComponent(password)}@127.0.0.1:${port}`;
  const open = (port: number, tls: Record<string, unknown>, overrides: Record<string, unknown> = {}) =>
    connect({
      url: url(port),
      driver,
      logger,
      keyPrefix: KEY_PREFIX,
      tls,
      connectTimeoutMs: CONNECT_TIMEOUT_MS,
      ...overrides,
    });

  /** A connect that must fail: the error, and how long it took. */
  async function failing(attempt: Promise<Bus>): Promise<{ error: BusbarError; ms: number }> {
    const started = Date.now();
    const result = await attempt.then(
      async (bus) => {
        await bus.close();
        return new Error('connected');
      },
      (e: unknown) => e,
    );
    const ms = Date.now() - started;
    if (!BusbarError.is(result)) throw new Error(`expected a BusbarError, got ${String(result)}`);
    return { error: result, ms };
  }

  const expectClean = (error: unknown) => expectNoSecret(error, secrets);

  async function roundTrip(bus: Bus): Promise<void> {
    const topic = `ok.${uniqueName('tls')}`;
    const got = collect<Message<{ n: number }>>();
    const sub = await bus.subscribe(topic, (m: Message<{ n: number }>) => got.push(m), { group: 'g' });
    await bus.publish(topic, { n: 1 });
    await bus.publish(topic, { n: 2 });
    const messages = await got.waitForCount(2, 10_000);
    expect(messages.map((m) => m.payload.n).sort()).toEqual([1, 2]);
    await sub.close();
  }

  beforeAll(async () => {
    servers = await startSecureRedis();
    secrets = [ACL_PASSWORD, servers.pki.pem(servers.pki.client.key).trim().split('\n').slice(1, -1).join('')];
    good = await open(servers.tlsPort, { ca: servers.pki.pem(servers.pki.ca) });
  }, 60_000);

  afterAll(async () => {
    await good?.close();
    await servers?.stop();
  });

  it('rediss:// with the CA: a round trip through a consumer group', async () => {
    await roundTrip(good);
  });

  it('mTLS: a client certificate of the CA is accepted (and its key never shows)', async () => {
    const { pki } = servers;
    const bus = await open(servers.mtlsPort, {
      ca: pki.pem(pki.ca),
      cert: pki.pem(pki.client.cert),
      key: pki.pem(pki.client.key),
    });
    try {
      await roundTrip(bus);
    } finally {
      await bus.close();
    }
  });

  it('mTLS without a client certificate, or with one of another CA: a ConnectionError at once that says why', async () => {
    const { pki } = servers;
    for (const tls of [
      { ca: pki.pem(pki.ca) },
      { ca: pki.pem(pki.ca), cert: pki.pem(pki.foreignClient.cert), key: pki.pem(pki.foreignClient.key) },
    ]) {
      const { error, ms } = await failing(open(servers.mtlsPort, tls));
      expect(error.code).toBe('BUSBAR_CONNECTION');
      // Under TLS 1.3 redis-server checks the client certificate after the handshake: the client reads its
      // alert (typed TLS, not retryable) or, when it was writing AUTH at that moment, only ECONNRESET (a network
      // reset looks the same, so that stays retryable, and the message names the likely cause). Either way
      // connect() fails at once instead of reconnecting until its timeout.
      if (error.retryable) expect(error.message).toMatch(/client certificate.*ECONNRESET/);
      else expect(error.message).toMatch(/alert (unknown ca|certificate required)/i);
      expect(ms).toBeLessThan(FAIL_FAST_MS);
      expectNoSecret(error, pemLines(pki.pem(pki.foreignClient.key)));
      expectClean(error);
    }
  });

  it('a server certificate of another CA: a ConnectionError naming the certificate, not retryable, at once', async () => {
    const { error, ms } = await failing(open(servers.tlsPort, { ca: servers.pki.pem(servers.pki.otherCa) }));
    expect(error.code).toBe('BUSBAR_CONNECTION');
    expect(error.retryable).toBe(false);
    expect(error.message).toMatch(/certificate/i);
    expect(ms).toBeLessThan(FAIL_FAST_MS);
    expectClean(error);
  });

  it('an expired server certificate: a ConnectionError saying so, not retryable, at once', async () => {
    const { error, ms } = await failing(open(servers.expiredPort, { ca: servers.pki.pem(servers.pki.ca) }));
    expect(error.code).toBe('BUSBAR_CONNECTION');
    expect(error.retryable).toBe(false);
    expect(error.message).toMatch(/expired/i);
    expect(ms).toBeLessThan(FAIL_FAST_MS);
    expectClean(error);
  });

  it('a server certificate for another host: a ConnectionError naming the mismatch, not retryable, at once', async () => {
    const { error, ms } = await failing(open(servers.wrongHostPort, { ca: servers.pki.pem(servers.pki.ca) }));
    expect(error.code).toBe('BUSBAR_CONNECTION');
    expect(error.retryable).toBe(false);
    expect(error.message).toMatch(/altnames|does not match|hostname/i);
    expect(ms).toBeLessThan(FAIL_FAST_MS);
    expectClean(error);
  });

  it('a wrong password: WRONGPASS as a ConnectionError, not retryable, at once, without the password', async () => {
    const wrong = 'Wrong-Canary-Pw-9a0c';
    const { error, ms } = await failing(
      connect({ url: url(servers.tlsPort, wrong), driver, logger, tls: { ca: servers.pki.pem(servers.pki.ca) } }),
    );
    expect(error.code).toBe('BUSBAR_CONNECTION');
    expect(error.retryable).toBe(false);
    expect(error.message).toMatch(/WRONGPASS/);
    expect(ms).toBeLessThan(FAIL_FAST_MS);
    expectNoSecret(error, [wrong]);
    expectClean(error);
  });

  it('a topic outside the ACL key pattern: NOPERM, typed and not retryable, for publish and subscribe', async () => {
    const topic = `no.${uniqueName('acl')}`;
    const published = await good.publish(topic, { n: 1 }).catch((e: unknown) => e);
    expect(BusbarError.is(published, 'BUSBAR_PUBLISH')).toBe(true);
    expect((published as BusbarError).retryable).toBe(false);
    expect((published as Error).message).toMatch(/NOPERM/);
    expectClean(published);
    const subscribed = await good.subscribe(topic, () => undefined, { group: 'g' }).catch((e: unknown) => e);
    expect(BusbarError.is(subscribed)).toBe(true);
    expect((subscribed as BusbarError).retryable).toBe(false);
    expect((subscribed as Error).message).toMatch(/NOPERM/);
    expectClean(subscribed);
  });

  it('RedisIdempotencyStore over mTLS with the ACL user: claims keys in its pattern', async () => {
    const { pki } = servers;
    const store = new RedisIdempotencyStore({
      url: url(servers.mtlsPort),
      keyPrefix: `${KEY_PREFIX}{ok.idem}:`,
      tls: { ca: pki.pem(pki.ca), cert: pki.pem(pki.client.cert), key: pki.pem(pki.client.key) },
    });
    try {
      const key = uniqueName('k');
      expect(await store.claim(key, 10_000)).toBe('claimed');
      expect(await store.claim(key, 10_000)).toBe('busy');
    } finally {
      await store.close();
    }
  });

  it('after every failure above the good bus still works, and no log line holds a secret', async () => {
    await roundTrip(good);
    const text = logged.join('\n');
    for (const secret of secrets) expect(text).not.toContain(secret);
  });
});
