import { type Bus, BusbarError, connect, silentLogger } from '@busbar/core';
import { createTestPki, opensslAvailable, type TestPki, uniqueName } from '@busbar/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { driver } from '../src/index.js';
import { canStartPrivateBroker } from './private-broker.js';
import { FORBIDDEN, OTHER_VHOST, PASSWORD, type SecureBroker, startSecureBroker } from './secure-broker.js';
import { ci, expectFatal, expectNoSecret, failedConnect, roundTrip, tlsFront } from './security-checks.js';

const ready = canStartPrivateBroker && opensslAvailable();
if (!ready) {
  if (ci) throw new Error('rabbitmq-server and openssl are needed for the RabbitMQ security tests');
  console.warn('[busbar] skipping the RabbitMQ TLS/auth tests: rabbitmq-server or openssl is not installed');
}

const WRONG = 'wrong/Pw@canary-7';
const secrets = [PASSWORD, WRONG];

// One private node per file: a TLS listener (server certificate only), a user with a password, vhosts.
describe.runIf(ready)('rabbitmq security: TLS, users, vhosts, permissions', () => {
  let pki: TestPki;
  let secure: SecureBroker;
  let tls: { ca: string };
  beforeAll(async () => {
    pki = createTestPki();
    tls = { ca: pki.pem(pki.ca) };
    secure = await startSecureBroker(pki, false);
  }, 120_000);
  afterAll(async () => {
    await secure?.broker.stop();
    pki?.remove();
  }, 60_000);

  const open = (url: string, extra: Record<string, unknown> = {}): Promise<Bus> =>
    connect({ url, driver, logger: silentLogger, tls, connectTimeoutMs: 20_000, ...extra });

  it('amqps:// round trip with the CA, by hostname and by IP; the password has / and @', async () => {
    for (const host of ['localhost', '127.0.0.1']) {
      const bus = await open(secure.url({ host }));
      try {
        await roundTrip(bus);
        expect(JSON.stringify(bus.health())).not.toContain(PASSWORD);
      } finally {
        await bus.close();
      }
    }
  }, 60_000);

  it('a server certificate from another CA: non-retryable ConnectionError at once', async () => {
    const failure = await failedConnect(secure.url(), { tls: { ca: pki.pem(pki.otherCa) } });
    expectFatal(failure, /certificate|self.signed|verify/i, secrets);
  }, 30_000);

  it('an expired server certificate: non-retryable ConnectionError naming it', async () => {
    const front = await tlsFront(pki.expired, pki, secure.broker.port);
    try {
      const failure = await failedConnect(secure.url({ port: front.port }), { tls });
      expectFatal(failure, /expired/i, secrets);
    } finally {
      await front.close();
    }
  }, 30_000);

  it('a certificate for another host name: non-retryable ConnectionError naming the mismatch', async () => {
    const front = await tlsFront(pki.wrongHost, pki, secure.broker.port);
    try {
      const failure = await failedConnect(secure.url({ port: front.port }), { tls });
      expectFatal(failure, /altname|host ?name|does not match/i, secrets);
    } finally {
      await front.close();
    }
  }, 30_000);

  it('a wrong password: non-retryable ConnectionError, no password anywhere', async () => {
    const failure = await failedConnect(secure.url({ password: WRONG }), { tls });
    expectFatal(failure, /ACCESS.REFUSED|refused/i, secrets);
  }, 30_000);

  it('a vhost that does not exist, and one the user may not use: non-retryable ConnectionError naming the vhost', async () => {
    for (const vhost of ['no-such-vhost', OTHER_VHOST]) {
      const failure = await failedConnect(secure.url({ vhost }), { tls });
      expectFatal(failure, new RegExp(`vhost.*${vhost}|${vhost}.*vhost`, 'i'), secrets);
    }
  }, 30_000);

  it('a forbidden topic: publish and subscribe fail typed and say so; the bus keeps working', async () => {
    const bus = await open(secure.url());
    try {
      const topic = `${FORBIDDEN}.${uniqueName('t')}`;
      const published = await bus.publish(topic, 1).catch((e: unknown) => e);
      expect(BusbarError.is(published), String(published)).toBe(true);
      expect((published as BusbarError).code).toBe('BUSBAR_PUBLISH');
      expect((published as BusbarError).retryable).toBe(false);
      expect((published as BusbarError).message).toMatch(/ACCESS_REFUSED/);
      expectNoSecret(published, secrets);

      const subscribed = await bus.subscribe(topic, async () => undefined, { group: 'g' }).catch((e: unknown) => e);
      expect(BusbarError.is(subscribed), String(subscribed)).toBe(true);
      expect((subscribed as BusbarError).code).toBe('BUSBAR_CONNECTION');
      expect((subscribed as BusbarError).retryable).toBe(false);
      expect((subscribed as BusbarError).message).toMatch(/ACCESS_REFUSED/);
      expectNoSecret(subscribed, secrets);

      // The same bus still publishes and consumes where it may.
      await roundTrip(bus);
      expect(bus.health().status).toBe('up');
    } finally {
      await bus.close();
    }
  }, 60_000);

  it('a good bus still works after all the refusals', async () => {
    const bus = await open(secure.url());
    try {
      await roundTrip(bus);
    } finally {
      await bus.close();
    }
  }, 30_000);
});
