import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { type Bus, connect, silentLogger } from '@busbar/core';
import { createTestPki, opensslAvailable, type TestPki } from '@busbar/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { driver } from '../src/index.js';
import { canStartPrivateBroker } from './private-broker.js';
import { PASSWORD, type SecureBroker, startSecureBroker } from './secure-broker.js';
import { ci, expectFatal, failedConnect, roundTrip } from './security-checks.js';

const ready = canStartPrivateBroker && opensslAvailable();
if (!ready) {
  if (ci) throw new Error('rabbitmq-server and openssl are needed for the RabbitMQ mTLS tests');
  console.warn('[busbar] skipping the RabbitMQ mTLS tests: rabbitmq-server or openssl is not installed');
}

// One private node per file: its TLS listener requires a client certificate from the test CA
// (ssl_options.verify = verify_peer, fail_if_no_peer_cert = true).
describe.runIf(ready)('rabbitmq security: mutual TLS', () => {
  let pki: TestPki;
  let secure: SecureBroker;
  /** Secrets of this file: the password and the client keys' PEM bodies. */
  let secrets: string[];
  beforeAll(async () => {
    pki = createTestPki();
    secure = await startSecureBroker(pki, true);
    const body = (file: string) => pki.pem(file).split('\n')[1] ?? '';
    secrets = [PASSWORD, body(pki.client.key), body(pki.foreignClient.key)];
  }, 120_000);
  afterAll(async () => {
    await secure?.broker.stop();
    pki?.remove();
  }, 60_000);

  const clientTls = () => ({ ca: pki.pem(pki.ca), cert: pki.pem(pki.client.cert), key: pki.pem(pki.client.key) });
  const open = (): Promise<Bus> =>
    connect({ url: secure.url(), driver, logger: silentLogger, tls: clientTls(), connectTimeoutMs: 20_000 });

  it('amqps:// round trip with a client certificate', async () => {
    const bus = await open();
    try {
      await roundTrip(bus);
      expect(bus.health().status).toBe('up');
    } finally {
      await bus.close();
    }
  }, 30_000);

  it('no client certificate: non-retryable ConnectionError at once', async () => {
    const failure = await failedConnect(secure.url(), { tls: { ca: pki.pem(pki.ca) } });
    expectFatal(failure, /certificate|handshake|alert/i, secrets);
  }, 30_000);

  it('a client certificate from another CA: non-retryable ConnectionError at once', async () => {
    const tls = { ca: pki.pem(pki.ca), cert: pki.pem(pki.foreignClient.cert), key: pki.pem(pki.foreignClient.key) };
    const failure = await failedConnect(secure.url(), { tls });
    expectFatal(failure, /certificate|unknown ca|alert/i, secrets);
  }, 30_000);

  it('a client key with a passphrase: connects with it; a wrong one fails typed at once, never shown', async () => {
    const passphrase = 'canary/Pass@phrase-5';
    const wrong = 'wrong/Pass@phrase-6';
    const encrypted = join(pki.dir, 'client-encrypted.key');
    execFileSync('openssl', [
      'pkcs8',
      '-topk8',
      '-in',
      pki.client.key,
      '-out',
      encrypted,
      '-passout',
      `pass:${passphrase}`,
    ]);
    const tls = { ...clientTls(), key: pki.pem(encrypted) };
    const bus = await connect({ url: secure.url(), driver, logger: silentLogger, tls: { ...tls, passphrase } });
    await bus.close();
    const failure = await failedConnect(secure.url(), { tls: { ...tls, passphrase: wrong } });
    expectFatal(failure, /decrypt|passphrase|key/i, [...secrets, passphrase, wrong]);
  }, 30_000);

  it('a good bus still works after the refusals', async () => {
    const bus = await open();
    try {
      await roundTrip(bus);
    } finally {
      await bus.close();
    }
  }, 30_000);
});
