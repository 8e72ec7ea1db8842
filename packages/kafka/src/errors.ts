import { type BusbarError, ConfigError, PayloadTooLargeError, UnsupportedError } from '@busbar/core';
import type { NativeErrorClass, NativeErrorContext } from '@busbar/core/transport';
import { explainTls, nativeError, sanitizeError } from '@busbar/core/transport';
import { NOT_KAFKA_CODE, TLS_VERIFY_CODE } from './internals.js';

interface KafkaJsErrorShape {
  name?: string;
  type?: string;
  retriable?: boolean;
  message?: string;
  originalError?: unknown;
  /** KafkaJSAggregateError: the broker's per-topic errors. */
  errors?: unknown[];
}

const CONNECTION_NAMES = new Set([
  'KafkaJSConnectionError',
  'KafkaJSConnectionClosedError',
  'KafkaJSBrokerNotFound',
  'KafkaJSNoBrokerAvailableError',
  'KafkaJSLockTimeout',
]);

/** The broker refused the login: the same credentials fail again. */
const AUTH_TYPES = new Set(['SASL_AUTHENTICATION_FAILED', 'ILLEGAL_SASL_STATE', 'UNSUPPORTED_SASL_MECHANISM']);

/** An ACL refused the operation: asking again gets the same answer. */
const DENIED_TYPES = new Set([
  'TOPIC_AUTHORIZATION_FAILED',
  'GROUP_AUTHORIZATION_FAILED',
  'CLUSTER_AUTHORIZATION_FAILED',
  'TRANSACTIONAL_ID_AUTHORIZATION_FAILED',
]);

/** A socket `code` anywhere along kafkajs' wrapping (originalError, cause, an aggregate's first error). */
function codeIn(error: unknown): string | undefined {
  let current = error as (KafkaJsErrorShape & { code?: unknown; cause?: unknown }) | undefined;
  for (let i = 0; i < 6 && typeof current === 'object' && current !== null; i++) {
    if (typeof current.code === 'string') return current.code;
    const next =
      current.originalError ?? current.cause ?? (Array.isArray(current.errors) ? current.errors[0] : undefined);
    current = next as typeof current;
  }
  return undefined;
}

/** The innermost kafkajs error (retries wrap the real one; an aggregate holds the broker's per-topic ones). */
export function rootCause(error: unknown): KafkaJsErrorShape {
  let current = error as KafkaJsErrorShape | undefined;
  for (let i = 0; i < 5 && current !== undefined; i++) {
    if (current.originalError !== undefined) current = current.originalError as KafkaJsErrorShape;
    else if (Array.isArray(current.errors) && current.errors.length > 0)
      current = current.errors[0] as KafkaJsErrorShape;
    else break;
  }
  return current ?? {};
}

/** The Kafka protocol error type (`MESSAGE_TOO_LARGE`, ...) of a kafkajs error, if any. */
export function errorType(error: unknown): string | undefined {
  const root = rootCause(error);
  return root.type ?? (error as KafkaJsErrorShape | undefined)?.type;
}

/**
 * kafkajs' errors read by kind: protocol error types (the broker's answer) first, then kafkajs' own
 * error names. Errors that are not kafkajs' fall through to core's common rules (socket codes, TLS).
 */
function classify(
  error: unknown,
  clean: Error,
  context: NativeErrorContext,
): NativeErrorClass | BusbarError | undefined {
  const root = rootCause(error);
  const type = errorType(error);
  const inner = root !== error && root.message ? sanitizeError(root, context.secrets).message : undefined;
  const message = `${clean.message}${inner && !clean.message.includes(inner) ? ` (${inner})` : ''}`;
  if (type === 'MESSAGE_TOO_LARGE' || type === 'RECORD_LIST_TOO_LARGE') {
    return payloadTooLarge(error, context.what, 0, 0, '', context.secrets);
  }
  if (type === 'INVALID_TOPIC_EXCEPTION' || type === 'UNKNOWN_TOPIC_OR_PARTITION') return { kind: 'topic', message };
  if (type === 'INVALID_REPLICATION_FACTOR' || type === 'INVALID_PARTITIONS' || type === 'POLICY_VIOLATION') {
    return { kind: 'config', message };
  }
  const code = codeIn(error);
  if (code === NOT_KAFKA_CODE) return { kind: 'connection', retryable: false, message };
  if (type !== undefined && AUTH_TYPES.has(type)) return { kind: 'auth', message };
  if (root.name === 'KafkaJSSASLAuthenticationError') return { kind: 'auth', message };
  if (type !== undefined && DENIED_TYPES.has(type)) {
    return context.op === 'publish' ? { kind: 'refused', retryable: false, message } : { kind: 'auth', message };
  }
  if (code !== undefined && TLS_VERIFY_CODE.test(code))
    return { kind: 'tls', message: explainTls(message, code) ?? message };
  if (root.name === 'KafkaJSRequestTimeoutError' || type === 'REQUEST_TIMED_OUT') return { kind: 'timeout', message };
  if (root.name !== undefined && CONNECTION_NAMES.has(root.name))
    return { kind: 'connection', message, retryable: true };
  const name = (error as KafkaJsErrorShape | undefined)?.name;
  if (type === undefined && !root.name?.startsWith('KafkaJS') && !name?.startsWith('KafkaJS')) return undefined;
  // Another kafkajs error: kafkajs says whether trying again can help.
  return { kind: context.op === 'publish' ? 'refused' : 'connection', message, retryable: root.retriable ?? true };
}

/**
 * A kafkajs error as a busbar error, redacted (core's one mapper with kafkajs' classifier). `context.what`
 * starts the message and names the topic: `Publishing to 'orders' failed`.
 */
export function toBusbarError(error: unknown, context: NativeErrorContext): BusbarError {
  return nativeError(error, context, (native, clean) => classify(native, clean, context));
}

/**
 * The broker refused a record as too large (MESSAGE_TOO_LARGE: the topic's max.message.bytes is below it).
 * Not retryable: the same record is refused again. `size` is what busbar sent, `limit` the configured
 * maxMessageBytes (the topic's own limit is not in the broker's answer).
 */
export function payloadTooLarge(
  error: unknown,
  what: string,
  size: number,
  limit: number,
  topic: string,
  secrets: readonly string[],
): PayloadTooLargeError {
  const clean = sanitizeError(error, secrets);
  const failure = new PayloadTooLargeError(size, limit, topic);
  failure.message = `${what}: the broker refused ${size > 0 ? `${size} bytes` : 'the record'} as too large (${clean.message}); raise the topic's max.message.bytes or lower maxMessageBytes`;
  Object.defineProperty(failure, 'cause', { value: clean, configurable: true, writable: true });
  return failure;
}

/**
 * The group's members agree on no assignment protocol with busbar's (the broker answers
 * INCONSISTENT_GROUP_PROTOCOL): a Java group on `cooperative-sticky` only, or another client's custom
 * assignor. Not retryable: the group has to change, not the timing.
 */
export function groupProtocolError(groupId: string, protocols: readonly string[], cause: unknown): ConfigError {
  return new ConfigError(
    `Kafka consumer group '${groupId}' has members that offer none of busbar's partition assignment protocols (${protocols.join(', ')}): the broker refused the join (INCONSISTENT_GROUP_PROTOCOL). Give the group's other consumers partition.assignment.strategy=roundrobin or range (Java: RoundRobinAssignor or RangeAssignor, also next to CooperativeStickyAssignor), or subscribe busbar with another group`,
    { cause, retryable: false },
  );
}

/**
 * A batch compressed with a codec this process has not registered (kafkajs ships only gzip): a foreign producer's
 * `compression.type=snappy|lz4|zstd`. kafkajs cannot skip it without losing its records, so the subscription
 * stops there until the codec is registered; this says which one and how.
 */
export function missingCodec(crash: unknown, topic: string): UnsupportedError | undefined {
  const message = crash instanceof Error ? crash.message : '';
  const match = /^(Snappy|LZ4|ZSTD) compression not implemented/i.exec(message);
  if (!match || (crash as Error).name !== 'KafkaJSNotImplemented') return undefined;
  const codec = (match[1] as string).toLowerCase();
  return new UnsupportedError(
    `Records on '${topic}' are compressed with ${codec}, which no codec in this process can read: register one (packages/kafka README, "Compression") and the subscription reads on from there`,
  );
}
