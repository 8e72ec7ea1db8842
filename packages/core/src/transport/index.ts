/**
 * `@busbar/core/transport`: the contract driver packages implement, and the
 * helpers they share. Application code does not need this subpath.
 */
export { defineDriver, isDriver } from './spi.js';
export { HEADER, DEAD_LETTER_READER_GROUP, attemptFromHeaders } from './headers.js';
export { withTimeout, deferred, Coalescer } from './util.js';
export { redactUrl, redactText, sanitizeError } from '../redact.js';
export { topicMatches, isPattern } from '../names.js';
export type {
  Capabilities,
  ConnectionHealth,
  ConnectionState,
  Delivery,
  Driver,
  OutgoingRecord,
  RetryRequest,
  SubscribeCallbacks,
  SubscribeSpec,
  Transport,
  TransportContext,
  TransportSubscription,
} from './spi.js';
export type { Deferred } from './util.js';
export type { Logger } from '../logger.js';
