import { type Bus, BusbarError, connect, silentLogger } from '@busbar/core';
import {
  collect,
  createTestPki,
  expectFatal,
  expectNoSecret,
  pemLines,
  roundTrip,
  sleep,
  type TestPki,
  uniqueName,
} from '@busbar/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { driver } from '../src/index.js';
import { ADMIN, ADMIN_PASSWORD, ALLOWED, FORBIDDEN, PASSWORD, SecureMosquitto, USER } from './secure-mosquitto.js';
import { failedConnect, secureBrokerAvailable } from './security-checks.js';

const userInfo = (password: string) => `${USER}:${encodeURIComponent(password)}`;

describe.runIf(secureBrokerAvailable())('mqtt security (one private Mosquitto: TLS, mTLS, password file, ACL)', () => {
  let pki: TestPki;
  let broker: SecureMosquitto;
  let ca = '';
  let clientKey = '';
  /** Everything that must never show: the password and every line of the client keys. */
  let secrets: string[] = [];

  beforeAll(async () => {
    pki = createTestPki();
    broker = new SecureMosquitto(pki);
    await broker.start();
    ca = pki.pem(pki.ca);
    clientKey = pki.pem(pki.client.key);
    secrets = [PASSWORD, ...pemLines(clientKey), ...pemLines(pki.pem(pki.foreignClient.key))];
  }, 60_000);
  afterAll(async () => {
    await broker?.destroy();
    pki?.remove();
  });

  const open = (url: string, extra: Record<string, unknown> = {}): Promise<Bus> =>
    connect({ url, driver, logger: silentLogger, connectTimeoutMs: 20_000, reconnectPeriodMs: 200, ...extra });
  const tlsUrl = () => `mqtts://${userInfo(PASSWORD)}@127.0.0.1:${broker.ports.tls}`;
  const clientCert = () => ({ ca, cert: pki.pem(pki.client.cert), key: clientKey });

  describe('connecting', () => {
    it('mqtts:// with the CA and a password (with / and @): a confirmed round trip', async () => {
      const bus = await open(tlsUrl(), { tls: { ca } });
      try {
        await roundTrip(bus, ALLOWED);
      } finally {
        await bus.close();
      }
    });

    it('mTLS: a client certificate from the CA is let in; a confirmed round trip', async () => {
      const bus = await open(`mqtts://127.0.0.1:${broker.ports.mtls}`, { tls: clientCert() });
      try {
        await roundTrip(bus, 'any');
      } finally {
        await bus.close();
      }
    });

    it('the password as an option instead of in the URL', async () => {
      const bus = await open(`mqtt://${USER}@127.0.0.1:${broker.ports.password}`, { password: PASSWORD });
      try {
        await roundTrip(bus, ALLOWED);
      } finally {
        await bus.close();
      }
    });

    it('servername: a certificate for another name is accepted when that name is expected', async () => {
      const bus = await open(`mqtts://127.0.0.1:${broker.ports.wrongHost}`, {
        tls: { ca, servername: 'wrong.example' },
      });
      try {
        await roundTrip(bus, 'sni');
      } finally {
        await bus.close();
      }
    });

    it('a client certificate needs both cert and key (ConfigError naming the field)', async () => {
      const error = await open(tlsUrl(), { tls: { ca, cert: pki.pem(pki.client.cert) } }).catch((e: unknown) => e);
      expect(BusbarError.is(error, 'BUSBAR_CONFIG'), String(error)).toBe(true);
      expect((error as Error).message).toContain('tls.cert');
    });
  });

  describe('refused at once, typed, not retryable, without secrets', () => {
    it('a server certificate from a CA the client does not trust', async () => {
      const failure = await failedConnect(tlsUrl(), { tls: { ca: pki.pem(pki.otherCa) } });
      expectFatal(failure, /certificate/i, secrets);
    });

    it('an expired server certificate', async () => {
      const failure = await failedConnect(`mqtts://127.0.0.1:${broker.ports.expired}`, { tls: { ca } });
      expectFatal(failure, /expired/i, secrets);
    });

    it('a server certificate for another host name', async () => {
      const failure = await failedConnect(`mqtts://127.0.0.1:${broker.ports.wrongHost}`, { tls: { ca } });
      expectFatal(failure, /does not match|altnames/i, secrets);
    });

    it('no client certificate on a listener that requires one', async () => {
      const failure = await failedConnect(`mqtts://127.0.0.1:${broker.ports.mtls}`, { tls: { ca } });
      expectFatal(failure, /certificate|alert|handshake/i, secrets);
    });

    it('a client certificate from another CA; its key never shows', async () => {
      const tls = { ca, cert: pki.pem(pki.foreignClient.cert), key: pki.pem(pki.foreignClient.key) };
      const failure = await failedConnect(`mqtts://127.0.0.1:${broker.ports.mtls}`, { tls });
      expectFatal(failure, /certificate|alert|ca/i, secrets);
    });

    it('a wrong password in the URL: one attempt, no reconnect loop afterwards', async () => {
      const port = broker.ports.password;
      const before = broker.connectionAttempts(port);
      const failure = await failedConnect(`mqtt://${userInfo(`${PASSWORD}-wrong`)}@127.0.0.1:${port}`);
      expectFatal(failure, /the broker refused the login: (bad user name or password|not authorized)/, [
        ...secrets,
        `${PASSWORD}-wrong`,
      ]);
      const after = broker.connectionAttempts(port);
      expect(after - before).toBeGreaterThanOrEqual(1);
      // Several reconnect periods (200 ms) later, nothing has tried again.
      await sleep(1_500);
      expect(broker.connectionAttempts(port)).toBe(after);
    });

    it('a wrong password as an option, over TLS', async () => {
      const failure = await failedConnect(`mqtts://${USER}@127.0.0.1:${broker.ports.tls}`, {
        tls: { ca },
        password: `${PASSWORD}-wrong`,
      });
      expectFatal(failure, /the broker refused the login: (bad user name or password|not authorized)/, [
        ...secrets,
        `${PASSWORD}-wrong`,
      ]);
    });
  });

  describe('the ACL file (acl_file): checked on PUBLISH and on delivery', () => {
    const passwordUrl = () => `mqtt://${userInfo(PASSWORD)}@127.0.0.1:${broker.ports.password}`;

    it('a forbidden publish is a PublishError naming 0x87, not retryable; the bus keeps working', async () => {
      const bus = await open(passwordUrl());
      try {
        const error = await bus.publish(`${FORBIDDEN}.${uniqueName('t')}`, { n: 1 }).catch((e: unknown) => e);
        expect(BusbarError.is(error, 'BUSBAR_PUBLISH'), String(error)).toBe(true);
        expect((error as BusbarError).retryable).toBe(false);
        expect((error as Error).message).toContain('not authorized (0x87)');
        expectNoSecret(error, secrets);
        await roundTrip(bus, ALLOWED);
      } finally {
        await bus.close();
      }
    });

    it('Mosquitto grants a forbidden SUBSCRIBE and withholds the messages (nothing a client can see)', async () => {
      const bus = await open(passwordUrl());
      const admin = await open(`mqtt://${ADMIN}:${ADMIN_PASSWORD}@127.0.0.1:${broker.ports.password}`);
      try {
        const topic = `${FORBIDDEN}.${uniqueName('t')}`;
        const mine = collect<string>();
        const theirs = collect<string>();
        await bus.subscribe(topic, async (m) => void mine.push(m.id));
        await admin.subscribe(topic, async (m) => void theirs.push(m.id));
        const id = await admin.publish(topic, { n: 1 });
        await theirs.waitForCount(1, 10_000);
        expect(theirs.items).toEqual([id]);
        await sleep(500);
        expect(mine.items).toEqual([]);
      } finally {
        await Promise.all([bus.close(), admin.close()]);
      }
    });
  });

  describe('the dynamic security plugin: checked on SUBSCRIBE too', () => {
    const dynsecUrl = () => `mqtt://${userInfo(PASSWORD)}@127.0.0.1:${broker.ports.dynsec}`;

    it('a forbidden publish is a PublishError naming 0x87; allowed group traffic flows', async () => {
      const bus = await open(dynsecUrl());
      try {
        const error = await bus.publish(`${FORBIDDEN}.${uniqueName('t')}`, { n: 1 }).catch((e: unknown) => e);
        expect(BusbarError.is(error, 'BUSBAR_PUBLISH'), String(error)).toBe(true);
        expect((error as BusbarError).retryable).toBe(false);
        expect((error as Error).message).toContain('not authorized (0x87)');
        await roundTrip(bus, ALLOWED);
      } finally {
        await bus.close();
      }
    });

    it('a forbidden subscription (SUBACK 0x87, group and broadcast) fails typed, not retryable', async () => {
      const bus = await open(dynsecUrl());
      try {
        for (const group of ['g', undefined]) {
          const topic = `${FORBIDDEN}.${uniqueName('t')}`;
          const started = Date.now();
          const error = await bus
            .subscribe(topic, async () => undefined, group ? { group } : {})
            .catch((e: unknown) => e);
          expect(BusbarError.is(error, 'BUSBAR_CONNECTION'), String(error)).toBe(true);
          expect((error as BusbarError).retryable).toBe(false);
          expect((error as Error).message).toContain('not authorized (0x87)');
          expect(Date.now() - started).toBeLessThan(5_000);
          expectNoSecret(error, secrets);
        }
        await roundTrip(bus, ALLOWED);
        expect(bus.health().status).toBe('up');
      } finally {
        await bus.close();
      }
    });

    it('a wrong password is refused at once, typed, without the password', async () => {
      const failure = await failedConnect(`mqtt://${userInfo(`${PASSWORD}-wrong`)}@127.0.0.1:${broker.ports.dynsec}`);
      expectFatal(failure, /the broker refused the login: (bad user name or password|not authorized)/, [
        ...secrets,
        `${PASSWORD}-wrong`,
      ]);
    });
  });

  it('after every refusal above, a good bus still connects and works (TLS and password)', async () => {
    const bus = await open(tlsUrl(), { tls: { ca } });
    try {
      await roundTrip(bus, ALLOWED);
      expect(bus.health().status).toBe('up');
    } finally {
      await bus.close();
    }
  });
});
