import { freePort, type TestPki } from '@busbar/testing';
import { type PrivateBroker, startPrivateBroker } from './private-broker.js';

/** The application user's password: `/` and `@` must survive URL-encoding, and it must never show up anywhere. */
export const PASSWORD = 'canary/Pw@9x-never-shown';
export const USER = 'app';
export const VHOST = 'secure';
/** A vhost the user has no permissions on. */
export const OTHER_VHOST = 'elsewhere';
/** Topics under this prefix are forbidden to the user (topic permission on writes, configure on its queues). */
export const FORBIDDEN = 'forbidden';

export interface SecureBroker {
  readonly broker: PrivateBroker;
  readonly tlsPort: number;
  /** `amqps://app:<password>@<host>:<tlsPort>/secure`, the password URL-encoded. */
  url(options?: { host?: string; password?: string; vhost?: string; port?: number }): string;
}

/**
 * A private node with a TLS listener (certificates from `pki`), the user `app` with a password, the vhost
 * `secure` where `app` may do everything except on `forbidden.*` (queues and routing keys), and a vhost
 * `elsewhere` it has no access to. `mutual`: the listener requires a client certificate from the CA.
 */
export async function startSecureBroker(pki: TestPki, mutual: boolean): Promise<SecureBroker> {
  const tlsPort = await freePort();
  const config = [
    `listeners.ssl.default = ${tlsPort}`,
    `ssl_options.cacertfile = ${pki.ca}`,
    `ssl_options.certfile = ${pki.server.cert}`,
    `ssl_options.keyfile = ${pki.server.key}`,
    `ssl_options.verify = ${mutual ? 'verify_peer' : 'verify_none'}`,
    `ssl_options.fail_if_no_peer_cert = ${mutual}`,
  ].join('\n');
  const broker = await startPrivateBroker({ config });
  try {
    await broker.ctl(['add_user', USER, PASSWORD]);
    await broker.ctl(['add_vhost', VHOST]);
    await broker.ctl(['add_vhost', OTHER_VHOST]);
    const allowed = `^(?!${FORBIDDEN}\\.).*`;
    await broker.ctl(['set_permissions', '-p', VHOST, USER, allowed, allowed, allowed]);
    await broker.ctl(['set_topic_permissions', '-p', VHOST, USER, 'busbar', allowed, '.*']);
  } catch (error) {
    await broker.stop();
    throw error;
  }
  return {
    broker,
    tlsPort,
    url: (o = {}) =>
      `amqps://${USER}:${encodeURIComponent(o.password ?? PASSWORD)}@${o.host ?? 'localhost'}:${o.port ?? tlsPort}/${encodeURIComponent(o.vhost ?? VHOST)}`,
  };
}
