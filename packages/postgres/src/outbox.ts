import { randomUUID } from 'node:crypto';
import type { Topic, TopicLike, ValidationIssue } from '@busbar/core';
import {
  BusbarError,
  ConfigError,
  defineTopic,
  isTopic,
  PayloadTooLargeError,
  SerializationError,
  ValidationError,
} from '@busbar/core';
import { assertTopicName, checkHeaders, recordBytes } from '@busbar/core/transport';
import { mapPgError } from './errors.js';
import { DEFAULT_OUTBOX_TABLE, migrationHint, type TableName, tableName } from './sql.js';
import type { SqlClient } from './types.js';

export interface OutboxOptions {
  /** Outbox table, `table` or `schema.table`. Default `busbar_outbox`. */
  table?: string;
  /**
   * The largest message (body + key + headers, UTF-8 bytes) `add` accepts: set it to the relay's bus limit
   * (its `maxPayloadBytes`, or the broker's) so a message too big fails the transaction, not the relay later.
   * Default: no limit here (the relay marks such a row failed).
   */
  maxPayloadBytes?: number;
}

export interface OutboxAddOptions {
  /** Ordering key: the relay publishes the rows of one key in insertion order. */
  key?: string;
  headers?: Record<string, string>;
  /** The busbar message id; default a fresh UUID. It travels with every (re-)send, so consumers can dedupe. */
  id?: string;
}

export interface Outbox {
  readonly table: string;
  /**
   * Writes a message inside the caller's transaction (`client` is the pg
   * client that ran `BEGIN`). The payload is checked against the topic's
   * schema and encoded with its codec now; the message id is fixed now.
   * Resolves with the message id. The relay is woken by a NOTIFY that
   * PostgreSQL delivers when the transaction commits (and drops on rollback).
   */
  add<T>(client: SqlClient, topic: TopicLike<T>, payload: T, options?: OutboxAddOptions): Promise<string>;
}

const ID = /^[A-Za-z0-9_.:-]{1,200}$/;
const ADD_OPTIONS = new Set(['key', 'headers', 'id']);

/** The LISTEN/NOTIFY channel of an outbox table (channel names are limited to 63 bytes). */
export function notifyChannel(table: TableName): string {
  return `busbar_outbox:${table.name}`.slice(0, 63);
}

export function createOutbox(options: OutboxOptions = {}): Outbox {
  const table = tableName(options.table ?? DEFAULT_OUTBOX_TABLE);
  const limit = options.maxPayloadBytes ?? Number.POSITIVE_INFINITY;
  if (!(typeof limit === 'number' && limit > 0)) {
    throw new ConfigError('Invalid outbox options: maxPayloadBytes must be a positive number');
  }
  const insert = `WITH row AS (
  INSERT INTO ${table.sql} (message_id, topic, key, headers, payload, content_type) VALUES ($1, $2, $3, $4, $5, $6) RETURNING 1
) SELECT pg_notify($7, '') FROM row`;
  const channel = notifyChannel(table);
  return {
    table: table.name,
    async add<T>(
      client: SqlClient,
      topic: TopicLike<T>,
      payload: T,
      addOptions: OutboxAddOptions = {},
    ): Promise<string> {
      if (!client || typeof client.query !== 'function')
        throw new ConfigError('outbox.add needs a pg client as its first argument');
      const def: Topic<T> = isTopic(topic) ? topic : (defineTopic(topic) as Topic<T>);
      // Core's own checks, in the order publish runs them: a row `add` takes is one the bus would take.
      assertTopicName(def.name, 'publish');
      checkAddOptions(addOptions);
      const value = def.schema ? await validate(def, payload) : payload;
      const body = encode(def, value);
      const headers = checkHeaders(addOptions.headers);
      const size = recordBytes({ body, key: addOptions.key, headers });
      if (size > limit) throw new PayloadTooLargeError(size, limit, def.name);
      const id = addOptions.id ?? randomUUID();
      try {
        await client.query(insert, [
          id,
          def.name,
          addOptions.key ?? null,
          headers,
          Buffer.from(body.buffer, body.byteOffset, body.byteLength),
          def.codec.contentType,
          channel,
        ]);
      } catch (error) {
        throw mapPgError(
          error,
          [],
          `Adding a message for '${def.name}' to the outbox failed`,
          migrationHint('outbox', table),
        );
      }
      return id;
    },
  };
}

/** An outbox on the default table `busbar_outbox`. */
export const outbox: Outbox = createOutbox();

async function validate<T>(def: Topic<T>, payload: T): Promise<T> {
  const schema = def.schema;
  if (!schema) return payload;
  const result = await schema['~standard'].validate(payload);
  if (!result.issues) return result.value;
  const issues: ValidationIssue[] = result.issues.map((issue) => ({
    message: issue.message,
    path: issue.path?.map((p) => (typeof p === 'object' && p !== null ? p.key : p)),
  }));
  const text = issues
    .slice(0, 5)
    .map((i) => (i.path && i.path.length > 0 ? `${i.path.map(String).join('.')}: ${i.message}` : i.message))
    .join('; ');
  throw new ValidationError(`Payload for '${def.name}' is invalid: ${text}`, issues);
}

/** The codec's bytes, or a SerializationError whatever a user codec throws or returns (as at publish). */
function encode<T>(def: Topic<T>, value: T): Uint8Array {
  let body: unknown;
  try {
    body = def.codec.encode(value);
  } catch (error) {
    if (BusbarError.is(error)) throw error;
    const message = error instanceof Error ? error.message : String(error);
    throw new SerializationError(`Encoding the payload for '${def.name}' failed: ${message}`, { cause: error });
  }
  if (!(body instanceof Uint8Array)) {
    throw new SerializationError(`The codec of '${def.name}' returned ${typeof body}, not a Uint8Array`);
  }
  return body;
}

function checkAddOptions(options: OutboxAddOptions): void {
  if (typeof options !== 'object' || options === null) throw new ConfigError('outbox.add options must be an object');
  for (const name in options) {
    if (!ADD_OPTIONS.has(name)) throw new ConfigError(`Invalid outbox.add options: unknown option '${name}'`);
  }
  const { key, id } = options;
  // PostgreSQL text holds no NUL, and a lone surrogate would be stored as U+FFFD (another key): refused before any
  // statement runs, so the caller's transaction is not aborted by the INSERT.
  if (
    key !== undefined &&
    (typeof key !== 'string' || key.length === 0 || key.length > 1024 || key.includes('\u0000') || !key.isWellFormed())
  ) {
    throw new ConfigError(
      'Invalid outbox.add options: key must be a string of 1-1024 characters, without NUL, with no lone surrogate',
    );
  }
  if (id !== undefined && (typeof id !== 'string' || !ID.test(id))) {
    throw new ConfigError(
      "Invalid outbox.add options: id must be 1-200 characters of letters, digits, '_', '.', ':' or '-'",
    );
  }
}
