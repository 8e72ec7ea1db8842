/**
 * @busbar/postgres: the transactional outbox (write messages in your own
 * transaction, a relay publishes them through any busbar bus) and an
 * idempotency store on PostgreSQL that can record a key in the handler's
 * own transaction.
 */

export type { OutboxEvent } from './events.js';
export { OUTBOX_CHANNEL } from './events.js';
export type { PostgresIdempotencyStoreOptions } from './idempotency.js';
export { AlreadyProcessedError, PostgresIdempotencyStore } from './idempotency.js';
export type { RelayBus, RelayOptions } from './options.js';

export type { Outbox, OutboxAddOptions, OutboxOptions } from './outbox.js';
export { createOutbox, outbox } from './outbox.js';
export type { Relay } from './relay.js';
export { createRelay } from './relay.js';
export type { MigrateOptions } from './sql.js';
export {
  DEFAULT_IDEMPOTENCY_TABLE,
  DEFAULT_OUTBOX_TABLE,
  idempotencyMigrationSql,
  migrate,
  outboxMigrationSql,
} from './sql.js';
export type { NotificationLike, PooledClient, PoolLike, QueryResultLike, SqlClient } from './types.js';
