import net from 'node:net';
import tls from 'node:tls';
import { type CertFiles, failedConnect as failed, freePort, type TestPki } from '@busbar/testing';
import { driver } from '../src/index.js';

export const ci = process.env.CI === 'true' || process.env.CI === '1';

export { errorTexts, expectFatal, expectNoSecret, roundTrip } from '@busbar/testing';

/** A `connect()` to `url` with the RabbitMQ driver and `extra` options that must fail (see @busbar/testing). */
export const failedConnect = (url: string, extra: Record<string, unknown>) => failed({ url, driver, ...extra });

/**
 * A TLS server presenting `cert` that forwards to `port` in plain AMQP: how a client meets an expired or
 * wrongly named server certificate (RabbitMQ has one certificate per listener set).
 */
export async function tlsFront(
  cert: CertFiles,
  pki: TestPki,
  port: number,
): Promise<{ port: number; close(): Promise<void> }> {
  const sockets = new Set<net.Socket>();
  const server = tls.createServer({ cert: pki.pem(cert.cert), key: pki.pem(cert.key) }, (socket) => {
    const upstream = net.connect(port, '127.0.0.1');
    for (const s of [socket, upstream]) {
      sockets.add(s);
      s.on('error', () => undefined);
      s.on('close', () => sockets.delete(s));
    }
    socket.pipe(upstream).pipe(socket);
  });
  server.on('tlsClientError', () => undefined);
  const front = await freePort();
  await new Promise<void>((resolve) => server.listen(front, '127.0.0.1', resolve));
  return {
    port: front,
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
}
