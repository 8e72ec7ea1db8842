import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Bus } from '@busbar/core';
import { createTestPki, type TestPki, uniqueName } from '@busbar/testing';
import { nkeys } from 'nats';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type OperatorSetup, operatorSetup } from './jwt.js';
import {
  expectNoSecrets,
  expectRefused,
  failure,
  logLines,
  open,
  roundTrip,
  secureServersAvailable,
  tlsBlock,
} from './secure.js';
import { type PrivateServer, privateServer } from './server.js';

const ok = secureServersAvailable();
const text = new TextDecoder();
const seedOf = (pair: { getSeed(): Uint8Array }) => text.decode(pair.getSeed());

const PASSWORD = 'pw-Secret/7f3a@9c%';
const WRONG_PASSWORD = 'pw-Wrong/0c81@d2%';
const TOKEN = 'tok-Secret-91b2e4';
const WRONG_TOKEN = 'tok-Wrong-55e7a0';
/** Every user of these servers may publish anywhere but `secret.>`. */
const FORBIDDEN = 'secret';
const denied = `{ publish: { deny: ["${FORBIDDEN}.>", "_busbar.rr.${FORBIDDEN}.>"] } }`;
const PUBLISH_TIMEOUT_MS = 8_000;

describe.runIf(ok)('nats TLS and auth (private servers)', () => {
  let pki: TestPki;
  let op: OperatorSetup;
  let ca: string;
  const nkey = nkeys.createUser();
  const nkeySeed = seedOf(nkey);
  const wrongSeed = seedOf(nkeys.createUser());
  /** TLS with a password user and an nkey user. */
  let users: PrivateServer;
  /** TLS that verifies client certificates (`verify: true`). */
  let mtls: PrivateServer;
  let token: PrivateServer;
  /** Operator mode: JWT accounts from a MEMORY resolver, users authenticate with `.creds`. */
  let operator: PrivateServer;
  let expired: PrivateServer;
  let wrongHost: PrivateServer;
  /** Opened first, used last: failed connects next to it leave it working. */
  let keeper: Bus;
  const buses: Bus[] = [];
  const secrets = () => [
    PASSWORD,
    WRONG_PASSWORD,
    TOKEN,
    WRONG_TOKEN,
    nkeySeed,
    wrongSeed,
    op.userSeed,
    ...op.strangerCreds.match(/SU[A-Z2-7]{56}/g)!,
    pki.pem(pki.client.key),
    pki.pem(pki.foreignClient.key),
  ];

  beforeAll(async () => {
    pki = createTestPki();
    op = operatorSetup([`${FORBIDDEN}.>`, `_busbar.rr.${FORBIDDEN}.>`]);
    ca = pki.pem(pki.ca);
    [users, mtls, token, operator, expired, wrongHost] = await Promise.all([
      privateServer(
        `${tlsBlock(pki.server, pki.ca, false)}\nauthorization { users: [` +
          `{ user: alice, password: "${PASSWORD}", permissions: ${denied} }, ` +
          `{ nkey: ${nkey.getPublicKey()}, permissions: ${denied} } ] }`,
      ),
      privateServer(tlsBlock(pki.server, pki.ca, true)),
      privateServer(`authorization { token: "${TOKEN}" }`),
      privateServer(op.config),
      privateServer(tlsBlock(pki.expired, pki.ca, false)),
      privateServer(tlsBlock(pki.wrongHost, pki.ca, false)),
    ]);
    keeper = await good(users.url, { tls: { ca }, user: 'alice', pass: PASSWORD });
  });

  afterAll(async () => {
    for (const bus of buses) await bus.close().catch(() => undefined);
    await Promise.all([users, mtls, token, operator, expired, wrongHost].map((s) => s?.destroy()));
    pki?.remove();
  });

  async function good(url: string, options: Record<string, unknown>): Promise<Bus> {
    const bus = await open(url, { publishTimeoutMs: PUBLISH_TIMEOUT_MS, ...options });
    buses.push(bus);
    return bus;
  }

  it('TLS with the CA and user/password (options or URL) connects and round-trips', async () => {
    await roundTrip(keeper);
    const url = users.url.replace('nats://', `nats://alice:${encodeURIComponent(PASSWORD)}@`);
    await roundTrip(await good(url, { tls: { ca } }));
  });

  it('TLS refusals are non-retryable ConnectionErrors naming the cause: wrong CA, expired, wrong host, no TLS', async () => {
    const auth = { user: 'alice', pass: PASSWORD };
    const wrongCa = await failure(() => open(users.url, { tls: { ca: pki.pem(pki.otherCa) }, ...auth }));
    expectRefused(wrongCa, /unable to verify|certificate/i, secrets());
    // Without a CA the system CAs are used, and they do not know the private one.
    expectRefused(await failure(() => open(users.url, auth)), /unable to verify|certificate/i, secrets());
    expectRefused(await failure(() => open(expired.url, { tls: { ca } })), /certificate has expired/, secrets());
    const host = await failure(() => open(wrongHost.url, { tls: { ca } }));
    expectRefused(host, /does not match certificate's altnames/, secrets());
    const plain = await failure(() => open(token.url, { token: TOKEN, tls: true }));
    expectRefused(plain, /server does not offer/, secrets());
  });

  it('mTLS: a client certificate of the CA connects; a foreign one or none is refused at once by its TLS alert', async () => {
    const client = { ca, cert: pki.pem(pki.client.cert), key: pki.pem(pki.client.key) };
    await roundTrip(await good(mtls.url, { tls: client }));
    const foreign = { ca, cert: pki.pem(pki.foreignClient.cert), key: pki.pem(pki.foreignClient.key) };
    // Regression: nats.js waited for its connect timeout (15 s here) and failed with a retryable TIMEOUT; the
    // server's alert after the TLS 1.3 handshake now fails the dial at once (src/internals.ts).
    const slow = { connectTimeoutMs: 15_000 };
    // The TLS 1.3 server sends its alert and closes: the client reads the alert (not retryable), or, when its
    // CONNECT hit the closed socket first, sees the reset (retryable). Either way it fails at once, typed.
    const refusedAtOnce = (f: Awaited<ReturnType<typeof failure>>, alert: RegExp) => {
      expect(f.error.code, f.error.message).toBe('BUSBAR_CONNECTION');
      expect(f.error.message).toMatch(new RegExp(`${alert.source}|ECONNRESET|EPIPE`));
      if (alert.test(f.error.message)) expect(f.error.retryable).toBe(false);
      expect(f.ms).toBeLessThan(10_000);
      expectNoSecrets(f.error, secrets());
    };
    refusedAtOnce(await failure(() => open(mtls.url, { tls: foreign, ...slow })), /alert bad certificate/);
    refusedAtOnce(await failure(() => open(mtls.url, { tls: { ca }, ...slow })), /alert/);
  });

  it('user/password: a wrong password is refused as an authorization violation and never shown', async () => {
    const f = await failure(() => open(users.url, { tls: { ca }, user: 'alice', pass: WRONG_PASSWORD }));
    expectRefused(f, /Authorization Violation/, secrets());
    const url = users.url.replace('nats://', `nats://alice:${encodeURIComponent(WRONG_PASSWORD)}@`);
    expectRefused(await failure(() => open(url, { tls: { ca } })), /Authorization Violation/, secrets());
  });

  it('token: the right one round-trips, a wrong one is refused and never shown', async () => {
    await roundTrip(await good(token.url, { token: TOKEN }));
    expectRefused(await failure(() => open(token.url, { token: WRONG_TOKEN })), /Authorization Violation/, secrets());
  });

  it('nkey: the seed of the configured user round-trips, another seed is refused and never shown', async () => {
    await roundTrip(await good(users.url, { tls: { ca }, nkeySeed }));
    const f = await failure(() => open(users.url, { tls: { ca }, nkeySeed: wrongSeed }));
    expectRefused(f, /Authorization Violation/, secrets());
  });

  it('creds (contents or file, operator mode): round-trips; a user of an unknown account is refused', async () => {
    await roundTrip(await good(operator.url, { creds: op.creds }));
    const file = join(pki.dir, 'user.creds');
    writeFileSync(file, op.creds, { mode: 0o600 });
    await roundTrip(await good(operator.url, { credsFile: file }));
    const stranger = await failure(() => open(operator.url, { creds: op.strangerCreds }));
    expectRefused(stranger, /Authorization Violation/, secrets());
    const garbage = await failure(() => open(operator.url, { creds: 'not a creds file' }));
    expectRefused(garbage, /creds/i, [...secrets(), 'not a creds file']);
  });

  it('a forbidden subject fails the publish at once (password, nkey and creds users); the bus goes on', async () => {
    const nkeyBus = await good(users.url, { tls: { ca }, nkeySeed });
    const credsBus = await good(operator.url, { creds: op.creds });
    for (const bus of [keeper, nkeyBus, credsBus]) {
      const topic = `${FORBIDDEN}.${uniqueName('f')}`;
      // Regression: the server's -ERR was not matched to the publish, which failed only at its timeout.
      const f = await failure(() => bus.publish(topic, 'x'));
      expect(f.error.code, f.error.message).toBe('BUSBAR_CONNECTION');
      expect(f.error.retryable).toBe(false);
      expect(f.error.message).toContain(`Permissions Violation for Publish to "${topic}"`);
      expect(f.ms).toBeLessThan(PUBLISH_TIMEOUT_MS / 2);
      expectNoSecrets(f.error, secrets());
      // A request on a forbidden subject (`_busbar.rr.secret.>`) fails the same way, not at its timeout.
      const request = await failure(() => bus.request(topic, 'q', { timeoutMs: PUBLISH_TIMEOUT_MS }));
      expect(request.error.code, request.error.message).toBe('BUSBAR_CONNECTION');
      expect(request.error.message).toContain('Permissions Violation for Publish to "_busbar.rr.');
      expect(request.ms).toBeLessThan(PUBLISH_TIMEOUT_MS / 2);
      await roundTrip(bus);
    }
  });

  it('auth settings that cannot work are ConfigErrors that show no secret', async () => {
    const cases: Record<string, unknown>[] = [
      { token: TOKEN, nkeySeed },
      { user: 'alice', pass: PASSWORD, creds: op.creds },
      { creds: op.creds, credsFile: '/nonexistent' },
      { nkeySeed: 'SUnot-a-seed' },
      { credsFile: join(pki.dir, 'missing.creds') },
      { tls: { ca, cert: pki.pem(pki.client.cert) } },
      { tls: { ca, bogus: 1 } },
    ];
    for (const options of cases) {
      const f = await failure(() => open(token.url, options));
      expect(f.error.code, JSON.stringify(Object.keys(options))).toBe('BUSBAR_CONFIG');
      expectNoSecrets(f.error, [...secrets(), 'SUnot-a-seed']);
    }
  });

  it('no secret reached a log line, and the first bus still works', async () => {
    expect(logLines.length).toBeGreaterThan(0);
    for (const line of logLines) {
      for (const secret of secrets()) expect(line.includes(secret), line.slice(0, 300)).toBe(false);
    }
    await roundTrip(keeper);
  });
});
