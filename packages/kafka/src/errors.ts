import { BusbarError, ConfigError, ConnectionError, InvalidTopicError, PublishError, TimeoutError } from '@busbar/core';
import { sanitizeError } from '@busbar/core/transport';

interface KafkaJsErrorShape {
  name?: string;
  type?: string;
  retriable?: boolean;
  originalError?: unknown;
}

const CONNECTION_NAMES = new Set([
  'KafkaJSConnectionError',
  'KafkaJSConnectionClosedError',
  'KafkaJSBrokerNotFound',
  'KafkaJSNoBrokerAvailableError',
  'KafkaJSSASLAuthenticationError',
  'KafkaJSLockTimeout',
]);

const AUTH_TYPES = new Set([
  'SASL_AUTHENTICATION_FAILED',
  'ILLEGAL_SASL_STATE',
  'UNSUPPORTED_SASL_MECHANISM',
  'TOPIC_AUTHORIZATION_FAILED',
  'GROUP_AUTHORIZATION_FAILED',
  'CLUSTER_AUTHORIZATION_FAILED',
]);

/** The innermost kafkajs error (retries wrap the real one). */
export function rootCause(error: unknown): KafkaJsErrorShape {
  let current = error as KafkaJsErrorShape | undefined;
  for (let i = 0; i < 5 && current?.originalError !== undefined; i++)
    current = current.originalError as KafkaJsErrorShape;
  return current ?? {};
}

/** The Kafka protocol error type (`MESSAGE_TOO_LARGE`, ...) of a kafkajs error, if any. */
export function errorType(error: unknown): string | undefined {
  const root = rootCause(error);
  return root.type ?? (error as KafkaJsErrorShape | undefined)?.type;
}

/** A kafkajs error as a busbar error, redacted. `what` says what was being done. */
export function toBusbarError(error: unknown, what: string, secrets: readonly string[], topic?: string): BusbarError {
  if (BusbarError.is(error)) return error;
  const clean = sanitizeError(error, secrets);
  const root = rootCause(error);
  const type = errorType(error);
  const text = `${what}: ${clean.message}`;
  if (type === 'MESSAGE_TOO_LARGE' || type === 'RECORD_LIST_TOO_LARGE') {
    return new PublishError(`${text} (raise the broker's message.max.bytes or lower maxMessageBytes)`, {
      cause: clean,
      retryable: false,
    });
  }
  if (type === 'INVALID_TOPIC_EXCEPTION' || type === 'UNKNOWN_TOPIC_OR_PARTITION') {
    return new InvalidTopicError(`${text}${topic ? ` (topic '${topic}')` : ''}`);
  }
  if (type === 'INVALID_REPLICATION_FACTOR' || type === 'INVALID_PARTITIONS' || type === 'POLICY_VIOLATION') {
    return new ConfigError(text, { cause: clean });
  }
  if (type !== undefined && AUTH_TYPES.has(type)) return new ConnectionError(text, { cause: clean, retryable: false });
  if (root.name === 'KafkaJSRequestTimeoutError' || type === 'REQUEST_TIMED_OUT')
    return new TimeoutError(text, { cause: clean });
  if (root.name !== undefined && CONNECTION_NAMES.has(root.name))
    return new ConnectionError(text, { cause: clean, retryable: true });
  return new PublishError(text, { cause: clean, retryable: root.retriable ?? true });
}
