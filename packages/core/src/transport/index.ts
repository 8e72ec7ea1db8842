/**
 * `@busbar/core/transport`: the contract driver packages implement, and the
 * helpers they share. Application code does not need this subpath.
 */

export { recordBytes } from '../dead-letter.js';
export { decodeByContentType, mediaType } from '../inbound.js';
export type { Logger } from '../logger.js';
export { memoryFaults } from '../memory/broker.js';
export {
  assertGroupName,
  assertTopicName,
  checkHeaders,
  isPattern,
  MAX_HEADERS_BYTES,
  MAX_TOPIC_LENGTH,
  RESERVED_HEADER_PREFIX,
  topicMatches,
} from '../names.js';
export { MAX_TIMER_MS } from '../options.js';
export { redactText, redactUrl, safeDecode, sanitizeError } from '../redact.js';
export type { DeliveryFields, SettleAction } from './delivery.js';
export { SettleOnce } from './delivery.js';
export { Deque } from './deque.js';
export type {
  NativeErrorClass,
  NativeErrorClassifier,
  NativeErrorContext,
  NativeErrorKind,
  NativeOperation,
} from './errors.js';
export { explainTls, nativeError } from './errors.js';
export {
  addWireHeader,
  attemptFromHeaders,
  DEAD_LETTER_READER_GROUP,
  HEADER,
  numericHeader,
  usableId,
  wireHeaderValue,
} from './headers.js';
export { type Timed, TimeoutLane } from './lane.js';
export { PendingReplies } from './replies.js';
export type {
  Capabilities,
  ConnectionHealth,
  ConnectionState,
  Delivery,
  Driver,
  IncomingRequest,
  LagInfo,
  OutgoingRecord,
  ReplyRecord,
  RequestReply,
  RespondSpec,
  RetryRequest,
  SubscribeCallbacks,
  SubscribeSpec,
  Transport,
  TransportContext,
  TransportSubscription,
} from './spi.js';
export { defineDriver, isDriver } from './spi.js';
export type { ResolvedTlsOptions, TlsOptions } from './tls.js';
export { TLS_SECRET_OPTIONS, tlsOptionsSchema } from './tls.js';
export type { Deferred } from './util.js';
export { abortable, Coalescer, deferred, keepsOwnTimestamp, withTimeout } from './util.js';
