/**
 * @busbar/core: one Producer/Consumer interface over every broker, with
 * retry, dead letters and idempotent consumers built in.
 */
export { connect, DRIVER_PACKAGES } from './connect.js';
export { Bus } from './bus.js';
export { defineTopic, isTopic } from './topic.js';
export { codecs, jsonCodec, stringCodec, bytesCodec } from './codec.js';
export { MemoryIdempotencyStore } from './idempotency.js';
export { deadLetterTopic, parseDeadLetter } from './dead-letter.js';
export { backoffDelay } from './retry.js';
export { channels } from './events.js';
export { redactUrl } from './redact.js';
export { consoleLogger, silentLogger } from './logger.js';
export { MAX_TOPIC_LENGTH } from './names.js';
export {
  BusbarError,
  ConfigError,
  DriverMissingError,
  ConnectionError,
  PublishError,
  TimeoutError,
  ClosedError,
  InvalidTopicError,
  InvalidHeaderError,
  PayloadTooLargeError,
  SerializationError,
  DecodeError,
  ValidationError,
  UnsupportedError,
  HandlerTimeoutError,
  PermanentError,
} from './errors.js';

export type { ConnectOptions } from './connect.js';
export type { BatchEntry, Health, PublishOptions, RedriveOptions } from './bus.js';
export type { Subscription, SubscriptionStats } from './subscription.js';
export type { Topic, TopicLike, TopicOptions } from './topic.js';
export type { Codec } from './codec.js';
export type { Message, Handler, HandlerContext, DeadLetterInfo } from './message.js';
export type { IdempotencyStore, ClaimResult } from './idempotency.js';
export type { SubscribeOptions, RetryPolicy } from './options.js';
export type { BusbarErrorCode, ValidationIssue } from './errors.js';
export type { Logger } from './logger.js';
export type { StandardSchemaV1, InferOutput } from './schema.js';
export type { PublishContext, ProcessContext, SettledEvent, ConnectionEvent, Outcome } from './events.js';
export type { Capabilities, ConnectionHealth, ConnectionState } from './transport/spi.js';
