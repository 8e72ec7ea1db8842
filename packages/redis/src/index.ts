import { defineDriver, TLS_SECRET_OPTIONS } from '@busbar/core/transport';
import { redisOptions } from './options.js';
import { RedisTransport } from './transport.js';

/** The Redis Streams driver for `redis://` and `rediss://` URLs. */
export const driver = defineDriver({
  name: 'redis',
  schemes: ['redis', 'rediss', 'redis+sentinel', 'rediss+sentinel'],
  options: redisOptions,
  secretOptions: ['password', 'sentinelPassword', ...TLS_SECRET_OPTIONS],
  create: (context) => new RedisTransport(context),
});

export type { TlsSettings as RedisTlsOptions } from './client.js';
export type { RedisEntry } from './codec.js';
export type { RedisIdempotencyStoreOptions } from './idempotency.js';
export { RedisIdempotencyStore } from './idempotency.js';
export type { RedisOptions } from './options.js';
export { redisOptions } from './options.js';
export type { RedisRequestEntry } from './responder.js';
