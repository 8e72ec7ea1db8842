import { defineDriver, TLS_SECRET_OPTIONS } from '@busbar/core/transport';
import { natsOptions } from './options.js';
import { NatsTransport } from './transport.js';

/**
 * The NATS JetStream driver for `nats://` URLs. `connect('nats://...')` loads
 * it by scheme; pass it explicitly with `connect({ url, driver })`.
 */
export const driver = defineDriver({
  name: 'nats',
  schemes: ['nats'],
  options: natsOptions,
  secretOptions: ['pass', 'token', 'nkeySeed', 'creds', ...TLS_SECRET_OPTIONS],
  create: (context) => new NatsTransport(context),
});

export type { StreamTarget } from './names.js';
export { consumerName, streamFor, toSubject } from './names.js';
export type { NatsOptions } from './options.js';
export { natsOptions } from './options.js';
