/**
 * @busbar/postgres: the transactional outbox (write messages in your own
 * transaction, a relay publishes them through any busbar bus) and an
 * idempotency store on PostgreSQL that can record a key in the handler's
 * own transaction.
 */
export { createOutbox, outbox } from './outbox.js';
export { createRelay } from './relay.js';
export { PostgresIdempotencyStore, AlreadyProcessedError } from './idempotency.js';
export {
  migrate,
  outboxMigrationSql,
  idempotencyMigrationSql,
  DEFAULT_OUTBOX_TABLE,
  DEFAULT_IDEMPOTENCY_TABLE,
} from './sql.js';
export { OUTBOX_CHANNEL } from './events.js';

export type { Outbox, OutboxOptions, OutboxAddOptions } from './outbox.js';
export type { Relay } from './relay.js';
export type { RelayOptions, RelayBus } from './options.js';
export type { PostgresIdempotencyStoreOptions } from './idempotency.js';
export type { MigrateOptions } from './sql.js';
export type { OutboxEvent } from './events.js';
export type { SqlClient, PoolLike, PooledClient, QueryResultLike, NotificationLike } from './types.js';
