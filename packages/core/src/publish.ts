import { randomUUID } from 'node:crypto';
import { type CloudEventOptions, cloudEventHeaders } from './cloudevents.js';
import { recordBytes } from './dead-letter.js';
import { BusbarError, ConfigError, PayloadTooLargeError, SerializationError } from './errors.js';
import { checkHeaders } from './names.js';
import { MAX_TIMER_MS } from './options.js';
import { checkSignal } from './signal.js';
import { toFailure } from './thrown.js';
import type { Topic } from './topic.js';
import { HEADER } from './transport/headers.js';
import type { OutgoingRecord } from './transport/spi.js';

export interface PublishOptions {
  /** Ordering / partition key: messages with one key stay in order where the broker keeps order. */
  key?: string;
  headers?: Record<string, string>;
  /** Message id; default a fresh UUID. Fix it yourself to make re-publishing idempotent downstream. */
  id?: string;
  /**
   * Write the message as a CloudEvent in binary mode (attributes in headers under the broker binding's
   * prefix; the id is the message id). `type` and `source` may come from the topic's `cloudEvent` option.
   */
  cloudEvent?: CloudEventOptions;
  /** Stops waiting: rejects with AbortedError (before sending: nothing sent; after: the outcome is unknown). */
  signal?: AbortSignal;
  /**
   * Hand the message to handlers no earlier than this many ms from now. The broker has it at once (the
   * publish resolves when it confirmed); each busbar consumer group that gets it early parks it in its retry
   * path (durable where the broker's is) until it is due, so order per key does not hold across a delayed
   * message. Consumers that are not busbar see it at once, with a `busbar-deliver-at` header (ms since the
   * epoch). At most 2^31-1 ms (24.8 days).
   */
  delayMs?: number;
}

export interface BatchEntry<T> extends Omit<PublishOptions, 'signal'> {
  payload: T;
}

export const PUBLISH_OPTION_KEYS = new Set(['key', 'headers', 'id', 'cloudEvent', 'signal', 'delayMs']);

export const BATCH_ENTRY_KEYS = new Set([...PUBLISH_OPTION_KEYS, 'payload'].filter((k) => k !== 'signal'));

/** The codec's bytes, or a SerializationError whatever a user codec throws or returns. */
function encodeWith<T>(def: Topic<T>, value: T): Uint8Array {
  let body: unknown;
  try {
    body = def.codec.encode(value);
  } catch (error) {
    if (BusbarError.is(error)) throw error;
    const failure = toFailure(error);
    throw new SerializationError(`Encoding the payload for '${def.name}' failed: ${failure.message}`, {
      cause: failure,
    });
  }
  if (!(body instanceof Uint8Array)) {
    throw new SerializationError(`The codec of '${def.name}' returned ${typeof body}, not a Uint8Array`);
  }
  return body;
}
/**
 * One message as it goes to the transport: encoded, headers checked, CloudEvent attributes added, size
 * checked in UTF-8 bytes against `limit`. Throws a typed error for any bad input; nothing is sent.
 */
export function encodeRecord<T>(
  def: Topic<T>,
  value: T,
  options: PublishOptions | undefined,
  limit: number,
  cloudEventsPrefix: string,
): OutgoingRecord {
  const body = encodeWith(def, value);
  const id = options?.id ?? randomUUID();
  const timestamp = Date.now();
  let headers = checkHeaders(options?.headers);
  if (options?.cloudEvent !== undefined || def.cloudEvent !== undefined) {
    headers = cloudEventHeaders(headers, def.cloudEvent, options?.cloudEvent, id, timestamp, cloudEventsPrefix);
  }
  const delayMs = options?.delayMs;
  if (delayMs !== undefined && delayMs > 0) {
    headers[HEADER.deliverAt] = String(timestamp + Math.ceil(delayMs));
  }
  const record: OutgoingRecord = {
    topic: def.name,
    id,
    key: options?.key,
    headers,
    body,
    contentType: def.codec.contentType,
    timestamp,
  };
  // Brokers count bytes, not UTF-16 code units: a string of 1,000 emoji is 4,000 bytes on the wire.
  const size = recordBytes(record);
  if (size > limit) throw new PayloadTooLargeError(size, limit, def.name);
  return record;
}

export function checkPublishOptions(options: PublishOptions, keys: ReadonlySet<string>): void {
  if (typeof options !== 'object' || options === null) throw new ConfigError('publish options must be an object');
  for (const name in options) {
    if (!keys.has(name)) throw new ConfigError(`Invalid publish options: unknown option '${name}'`);
  }
  if (
    options.key !== undefined &&
    (typeof options.key !== 'string' || options.key.length === 0 || options.key.length > 1024)
  ) {
    throw new ConfigError('Invalid publish options: key must be a string of 1-1024 characters');
  }
  if (options.id !== undefined && (typeof options.id !== 'string' || !/^[A-Za-z0-9_.:-]{1,200}$/.test(options.id))) {
    throw new ConfigError(
      "Invalid publish options: id must be 1-200 characters of letters, digits, '_', '.', ':' or '-'",
    );
  }
  const delayMs = options.delayMs;
  if (delayMs !== undefined && (typeof delayMs !== 'number' || !(delayMs >= 0 && delayMs <= MAX_TIMER_MS))) {
    throw new ConfigError(`Invalid publish options: delayMs must be a number of ms from 0 to ${MAX_TIMER_MS}`);
  }
  checkSignal(options.signal, 'publish options');
}
