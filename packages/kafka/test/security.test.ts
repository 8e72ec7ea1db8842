import { type Bus, BusbarError, connect, silentLogger } from '@busbar/core';
import { createTestPki, opensslAvailable, type TestPki, uniqueName } from '@busbar/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { driver } from '../src/index.js';
import { kraftAvailable } from './kraft.js';
import { SCRAM_USER, SecureBroker } from './secure-broker.js';
import { errorTexts, expectFatal, expectNoSecret, failedConnect, roundTrip } from './security-checks.js';

const ci = process.env.CI === 'true' || process.env.CI === '1';
const hasOpenssl = opensslAvailable();
if (!hasOpenssl && ci) throw new Error('openssl is needed for the Kafka security tests and CI is set');
if (!hasOpenssl) console.warn('[busbar] skipping the Kafka TLS/auth tests: openssl is not installed');
const ready = hasOpenssl && kraftAvailable('the Kafka TLS/auth tests');

// `/` and `@` must survive the URL; the canary words make a leak easy to spot.
const PASSWORD = 'Kafka/Pw@canary-7391';
const WRONG = 'wrong/Pw@canary-5550';

// One private node per file, with a listener per case (secure-broker.ts).
describe.runIf(ready)('kafka security: TLS, mTLS, SASL/SCRAM, ACLs', () => {
  let pki: TestPki;
  let broker: SecureBroker;
  let ca: string;
  let clientKey: string;
  let secrets: string[];
  const forbidden = uniqueName('forbidden');
  beforeAll(async () => {
    pki = createTestPki();
    ca = pki.pem(pki.ca);
    clientKey = pki.pem(pki.client.key);
    secrets = [PASSWORD, WRONG, clientKey, pki.pem(pki.foreignClient.key)];
    broker = await SecureBroker.start(pki, PASSWORD, forbidden);
  }, 180_000);
  afterAll(async () => {
    await broker?.stop();
    pki?.remove();
  }, 60_000);

  const at = (port: number, password = PASSWORD) =>
    `kafka://${SCRAM_USER}:${encodeURIComponent(password)}@127.0.0.1:${port}`;
  const open = (url: string, extra: Record<string, unknown> = {}): Promise<Bus> =>
    connect({ url, driver, logger: silentLogger, connectTimeoutMs: 20_000, partitions: 1, ...extra });
  const mtls = () => ({ ca, cert: pki.pem(pki.client.cert), key: clientKey });

  it('TLS: publish and consume with the CA, by IP and by host name', async () => {
    for (const host of ['127.0.0.1', 'localhost']) {
      const bus = await open(`kafka://${host}:${broker.ports.tls}`, { tls: { ca } });
      try {
        await roundTrip(bus);
      } finally {
        await bus.close();
      }
    }
  }, 90_000);

  it('mTLS: publish and consume with a client certificate; the key is nowhere in health or inspect', async () => {
    const bus = await open(`kafka://127.0.0.1:${broker.ports.mtls}`, { tls: mtls() });
    try {
      await roundTrip(bus);
      expect(JSON.stringify(bus.health())).not.toContain(clientKey);
    } finally {
      await bus.close();
    }
  }, 60_000);

  it('mTLS without a client certificate, or with one of another CA: non-retryable ConnectionError', async () => {
    const none = await failedConnect(`kafka://127.0.0.1:${broker.ports.mtls}`, { tls: { ca } });
    expectFatal(none, /certificate|handshake|alert/i, secrets);
    const foreign = { ca, cert: pki.pem(pki.foreignClient.cert), key: pki.pem(pki.foreignClient.key) };
    const other = await failedConnect(`kafka://127.0.0.1:${broker.ports.mtls}`, { tls: foreign });
    expectFatal(other, /certificate|handshake|alert|unknown ca/i, secrets);
  }, 60_000);

  it('SASL/SCRAM-SHA-512 over TLS: publish and consume; the password is nowhere in health', async () => {
    const bus = await open(at(broker.ports.sasl), { tls: { ca }, saslMechanism: 'scram-sha-512' });
    try {
      await roundTrip(bus);
      expect(JSON.stringify(bus.health())).not.toContain(PASSWORD);
    } finally {
      await bus.close();
    }
  }, 60_000);

  it('a server certificate from another CA: non-retryable ConnectionError at once', async () => {
    const failure = await failedConnect(`kafka://127.0.0.1:${broker.ports.tls}`, { tls: { ca: pki.pem(pki.otherCa) } });
    expectFatal(failure, /certificate|self.signed|verify/i, secrets);
  }, 30_000);

  it('an expired server certificate: non-retryable ConnectionError naming it', async () => {
    const failure = await failedConnect(`kafka://127.0.0.1:${broker.ports.expired}`, { tls: { ca } });
    expectFatal(failure, /expired/i, secrets);
  }, 30_000);

  it('a certificate for another host name: non-retryable ConnectionError naming the mismatch', async () => {
    const failure = await failedConnect(`kafka://127.0.0.1:${broker.ports.wrongHost}`, { tls: { ca } });
    expectFatal(failure, /altname|host ?name|does not match/i, secrets);
  }, 30_000);

  it('a wrong password: non-retryable ConnectionError, no password anywhere', async () => {
    const failure = await failedConnect(at(broker.ports.sasl, WRONG), { tls: { ca }, saslMechanism: 'scram-sha-512' });
    expectFatal(failure, /SASL|authentication/i, secrets);
    expect(errorTexts(failure.error)).not.toContain(PASSWORD);
  }, 30_000);

  it('a forbidden topic: publish and subscribe fail typed, not retryable, saying so; the bus keeps working', async () => {
    const bus = await open(at(broker.ports.sasl), { tls: { ca }, saslMechanism: 'scram-sha-512' });
    try {
      const started = Date.now();
      const published = await bus.publish(forbidden, 1).catch((e: unknown) => e);
      expect(BusbarError.is(published), String(published)).toBe(true);
      expect((published as BusbarError).code).toBe('BUSBAR_PUBLISH');
      expect((published as BusbarError).retryable).toBe(false);
      expect((published as BusbarError).message).toMatch(/authoriz/i);
      expect((published as BusbarError).message).toContain(forbidden);
      expectNoSecret(published, secrets);

      const subscribed = await bus.subscribe(forbidden, async () => undefined, { group: 'g' }).catch((e: unknown) => e);
      expect(BusbarError.is(subscribed), String(subscribed)).toBe(true);
      expect((subscribed as BusbarError).retryable).toBe(false);
      expect((subscribed as BusbarError).message).toMatch(/authoriz/i);
      expectNoSecret(subscribed, secrets);
      expect(Date.now() - started).toBeLessThan(20_000);

      // The same bus still publishes and consumes where it may.
      await roundTrip(bus);
    } finally {
      await bus.close();
    }
  }, 90_000);

  it('a good bus still works after all the refusals', async () => {
    const bus = await open(at(broker.ports.sasl), { tls: { ca }, saslMechanism: 'scram-sha-512' });
    try {
      await roundTrip(bus);
      expect(bus.health().status).toBe('up');
    } finally {
      await bus.close();
    }
  }, 60_000);
});
