import { type ChildProcess, spawn } from 'node:child_process';
import net from 'node:net';
import { createTestPki, freePort, opensslAvailable, type TestPki, waitFor } from '@busbar/testing';
import { installed, REDIS_SERVER, stopRedis, tempDir } from './private-redis.js';

/** The ACL user of the secure servers: it may touch only keys of topics that start with `ok.` under `app:`. */
export const ACL_USER = 'app';
export const ACL_PASSWORD = 'Acl-Canary/Pw@51d2%';
export const KEY_PREFIX = 'app:';

/** Whether the TLS tests can run; with CI set, a missing redis-server or openssl is a failure, not a skip. */
export function secureRedisAvailable(): boolean {
  if (installed(REDIS_SERVER) && opensslAvailable()) return true;
  if (process.env.CI === 'true' || process.env.CI === '1') {
    throw new Error('redis-server (built with TLS) or openssl is missing and CI is set');
  }
  console.warn('[busbar] skipping Redis TLS tests: redis-server or openssl is missing');
  return false;
}

function tcpOpen(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect(port, '127.0.0.1');
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
  });
}

export interface SecureRedis {
  readonly pki: TestPki;
  /** TLS only (clients need no certificate). */
  readonly tlsPort: number;
  /** TLS with `tls-auth-clients yes`: a client certificate of the test CA is required. */
  readonly mtlsPort: number;
  /** Serves a certificate that expired yesterday. */
  readonly expiredPort: number;
  /** Serves a certificate for `wrong.example` only. */
  readonly wrongHostPort: number;
  stop(): Promise<void>;
}

/**
 * Four TLS-only redis-servers (plaintext port 0) on free ports, each with the ACL user `app` (`~app:{ok*`)
 * and the default user off, so every connection must authenticate.
 */
export async function startSecureRedis(): Promise<SecureRedis> {
  const pki = createTestPki();
  const dir = tempDir('tls');
  const children: ChildProcess[] = [];
  const stop = async () => {
    await Promise.all(children.map((c) => stopRedis(c)));
    dir.remove();
    pki.remove();
  };
  const start = async (cert: { cert: string; key: string }, authClients: 'yes' | 'no'): Promise<number> => {
    const port = await freePort();
    const args = [
      '--port',
      '0',
      '--tls-port',
      String(port),
      '--bind',
      '127.0.0.1',
      '--tls-cert-file',
      cert.cert,
      '--tls-key-file',
      cert.key,
      '--tls-ca-cert-file',
      pki.ca,
      '--tls-auth-clients',
      authClients,
      '--save',
      '',
      '--appendonly',
      'no',
      '--dir',
      dir.path,
      // Each ACL rule its own argument: redis-server reads `--user a b` as the config line `user a b`.
      '--user',
      'default',
      'off',
      '--user',
      ACL_USER,
      'on',
      `>${ACL_PASSWORD}`,
      `~${KEY_PREFIX}{ok*`,
      '+@all',
    ];
    const child = spawn(REDIS_SERVER, args, { stdio: 'ignore' });
    children.push(child);
    await waitFor(() => tcpOpen(port), 15_000, `private TLS redis-server on ${port}`);
    return port;
  };
  try {
    const tlsPort = await start(pki.server, 'no');
    const mtlsPort = await start(pki.server, 'yes');
    const expiredPort = await start(pki.expired, 'no');
    const wrongHostPort = await start(pki.wrongHost, 'no');
    return { pki, tlsPort, mtlsPort, expiredPort, wrongHostPort, stop };
  } catch (error) {
    await stop();
    throw error;
  }
}
