/**
 * @busbar/core: one Producer/Consumer interface over every broker, with
 * retry, dead letters and idempotent consumers built in.
 */

export type { BatchContext, BatchHandler } from './batch.js';
export type {
  BatchEntry,
  Bus,
  DeadLetterWalkOptions,
  GroupLag,
  Health,
  PublishOptions,
  RedriveOptions,
} from './bus.js';
export type { CloudEventOptions } from './cloudevents.js';
export type { Codec } from './codec.js';
export { bytesCodec, codecs, jsonCodec, stringCodec } from './codec.js';
export type { ConnectOptions } from './connect.js';
export { connect, DRIVER_PACKAGES } from './connect.js';
export { deadLetterTopic, parseDeadLetter } from './dead-letter.js';
export type { BusbarErrorCode, ValidationIssue } from './errors.js';
export {
  AbortedError,
  BusbarError,
  ClosedError,
  ConfigError,
  ConnectionError,
  DecodeError,
  DriverMissingError,
  HandlerTimeoutError,
  InvalidHeaderError,
  InvalidTopicError,
  NoRespondersError,
  PayloadTooLargeError,
  PermanentError,
  PublishError,
  RemoteError,
  SerializationError,
  TimeoutError,
  UnsupportedError,
  ValidationError,
} from './errors.js';
export type { ConnectionEvent, Outcome, ProcessContext, PublishContext, SettledEvent } from './events.js';
export { channels } from './events.js';
export type { ClaimResult, IdempotencyStore } from './idempotency.js';
export { MemoryIdempotencyStore } from './idempotency.js';
export type { CloudEvent } from './inbound.js';
export type { Logger } from './logger.js';
export { consoleLogger, silentLogger } from './logger.js';
export type { DeadLetterInfo, Handler, HandlerContext, Message } from './message.js';
export type { ConsumeMiddleware, Middleware, OutgoingMessage, PublishMiddleware } from './middleware.js';
export { MAX_TOPIC_LENGTH } from './names.js';
export type { BatchOptions, RetryPolicy, SubscribeBatchOptions, SubscribeOptions } from './options.js';
export { redactUrl } from './redact.js';
export type { RequestOptions, Responder, RespondOptions } from './request.js';
export { backoffDelay } from './retry.js';
export type { InferOutput, StandardSchemaV1 } from './schema.js';
export type { Subscription, SubscriptionStats } from './subscription/index.js';
export { NonErrorThrown } from './thrown.js';
export type { Topic, TopicLike, TopicOptions } from './topic.js';
export { defineTopic, isTopic } from './topic.js';
export type { Capabilities, ConnectionHealth, ConnectionState, LagInfo } from './transport/spi.js';
