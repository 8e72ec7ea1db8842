/**
 * busbar's own header names on the wire. All share the reserved `busbar-`
 * prefix (users cannot set them) and are kept few and short: every header
 * costs throughput on some brokers.
 */
export const HEADER = {
  /** Message id, for brokers without a native id field. */
  id: 'busbar-id',
  /** Partition/ordering key, for brokers without a native key field. */
  key: 'busbar-key',
  /** Publish time in ms, for brokers without a native timestamp. */
  timestamp: 'busbar-ts',
  /** Attempt number of a retried message (absent means 1). */
  attempt: 'busbar-attempt',
  /** Original topic of a message in a retry queue/topic. */
  topic: 'busbar-topic',
  /** Time of the first failure, ms since the epoch; carried across retries. */
  firstFailure: 'busbar-first-failure',
  /** How many times a dead letter was re-driven; brokers that dedupe by id fold it into the dedup id. */
  redrive: 'busbar-redrive',
  /**
   * On a message whose dead-letter write was refused: how many times. It travels the retry path with the
   * dead-letter metadata, and core retries only the write when it comes back.
   */
  dlPending: 'busbar-dl-pending',
  /** On a reply: the request failed; the value is the error code (a BusbarError code or the error's name). */
  replyError: 'busbar-error',
  /** On a failed reply: the error message, bounded. */
  replyErrorMessage: 'busbar-error-message',
  dlErrorName: 'busbar-dl-error',
  dlErrorMessage: 'busbar-dl-message',
  dlErrorStack: 'busbar-dl-stack',
  dlAttempts: 'busbar-dl-attempts',
  dlTopic: 'busbar-dl-topic',
  dlGroup: 'busbar-dl-group',
  dlFirstFailure: 'busbar-dl-first-failure',
  dlLastFailure: 'busbar-dl-last-failure',
  /** Names of the headers a dead letter had to leave behind (the broker refused them), as a JSON array in ASCII. */
  dlDroppedHeaders: 'busbar-dl-dropped-headers',
  /**
   * On a message published with `delayMs`: when it may be handled, ms since the epoch. A busbar consumer that
   * gets it earlier sends it through its group's retry path until then (see the subscription pipeline).
   */
  deliverAt: 'busbar-deliver-at',
  /** On a message in a delay/retry queue: when it is due, ms since the epoch (drivers without native delay). */
  due: 'busbar-due',
  /**
   * On a dead letter: where the failed message was in its source, so a walk over dead letters can tell
   * copies apart. Partition where the broker has them (Kafka); offset is the broker's position in its own
   * terms (Kafka offset, JetStream `<stream>:<sequence>`, Redis entry id).
   */
  sourcePartition: 'busbar-source-partition',
  sourceOffset: 'busbar-source-offset',
  /**
   * A record key that is not UTF-8 (a foreign producer's binary key), base64: busbar's API has string keys, so
   * retries, dead letters and re-drives write these bytes as the key instead of the string made from them.
   */
  keyBytes: 'busbar-key-bytes',
  /** On a Kafka record busbar published with a null value (a tombstone), kept so a retry stays a tombstone. */
  tombstone: 'busbar-tombstone',
  /**
   * MQTT only: the compact `<timestamp> <id>` user property busbar writes instead of two headers, the name a
   * user header called `busbar` travels under instead, and the list of header names escaped for MQTT.
   */
  mqttMeta: 'busbar',
  mqttRenamedMeta: 'busbar-busbar',
  mqttEscaped: 'busbar-esc',
} as const;

/** The group `declareGroup` creates on every dead-letter topic; `bus.deadLetters()` and `bus.redrive()` read through it. */
export const DEAD_LETTER_READER_GROUP = 'busbar-dlq';

/** The attempt number from a `busbar-attempt` header, or 1. */
export function attemptFromHeaders(headers: Readonly<Record<string, string>>): number {
  const value = headers[HEADER.attempt];
  if (value === undefined) return 1;
  const n = Number.parseInt(value, 10);
  return Number.isFinite(n) && n >= 1 ? n : 1;
}

/**
 * The one rule every driver applies to a header value read from the wire, so a foreign producer's
 * headers look the same whichever broker carried them (the native value stays in `message.raw`):
 * - a string is kept as is; bytes that are valid UTF-8 become that text, other bytes base64;
 * - null or undefined (a Kafka header with a null value) becomes '' (present, empty);
 * - numbers, bigints and booleans their `String()`, a Date its ISO form;
 * - an array (and a key repeated on the wire: see {@link addWireHeader}) joins its values with ', ',
 *   as HTTP combines repeated fields (RFC 9110, 5.3);
 * - anything else (an AMQP table, a Long) its JSON, bigints as strings.
 */
export function wireHeaderValue(value: unknown): string {
  if (typeof value === 'string') return value;
  if (value === null || value === undefined) return '';
  if (value instanceof Uint8Array) return bytesToText(value);
  if (typeof value === 'number' || typeof value === 'bigint' || typeof value === 'boolean') return String(value);
  if (value instanceof Date) return Number.isNaN(value.getTime()) ? '' : value.toISOString();
  if (Array.isArray(value)) return value.map(wireHeaderValue).join(', ');
  try {
    return JSON.stringify(value, (_k, v: unknown) => (typeof v === 'bigint' ? String(v) : v)) ?? '';
  } catch {
    return '';
  }
}

const strictUtf8 = new TextDecoder('utf-8', { fatal: true });

function bytesToText(bytes: Uint8Array): string {
  try {
    return strictUtf8.decode(bytes);
  } catch {
    return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('base64');
  }
}

/**
 * Adds one header read from the wire to `headers`: the value goes through {@link wireHeaderValue}, a
 * repeated key is joined to the earlier value with ', ', and a name such as `__proto__` becomes an own
 * property instead of changing the record's [[Prototype]].
 */
export function addWireHeader(headers: Record<string, string>, name: string, value: unknown): void {
  const text = wireHeaderValue(value);
  const earlier = Object.hasOwn(headers, name) ? headers[name] : undefined;
  const joined = earlier === undefined ? text : `${earlier}, ${text}`;
  if (name === '__proto__') {
    Object.defineProperty(headers, name, { value: joined, enumerable: true, writable: true, configurable: true });
  } else headers[name] = joined;
}

/** A number read from a busbar header, or `fallback` when absent or not a finite number (foreign or damaged input). */
export function numericHeader(value: string | undefined, fallback: number): number {
  if (value === undefined || value === '') return fallback;
  const n = Number(value);
  return Number.isFinite(n) ? n : fallback;
}

// biome-ignore lint/suspicious/noControlCharactersInRegex: control characters are what makes an id unusable
const ID_CONTROL = /[\u0000-\u001f\u007f-\u009f]/;

/**
 * An id from the wire that can identify a message (for idempotency, dead letters, logs): a non-empty string
 * of at most 1 KB (UTF-8) without control characters. Anything else counts as absent, so the driver falls back to the
 * broker's own identity or makes one up (`idGenerated`).
 */
export function usableId(id: unknown): id is string {
  if (typeof id !== 'string' || id.length === 0 || id.length > MAX_ID_BYTES || ID_CONTROL.test(id)) return false;
  // Cheap bound first: a UTF-16 code unit is at most 3 UTF-8 bytes.
  return id.length * 3 <= MAX_ID_BYTES || Buffer.byteLength(id) <= MAX_ID_BYTES;
}

/** The longest id taken from the wire, in UTF-8 bytes. */
const MAX_ID_BYTES = 1_024;
