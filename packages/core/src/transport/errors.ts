import {
  BusbarError,
  ClosedError,
  ConfigError,
  ConnectionError,
  InvalidHeaderError,
  InvalidTopicError,
  PublishError,
  TimeoutError,
} from '../errors.js';
import { sanitizeError } from '../redact.js';

/**
 * What a native error means, as a driver's classifier says it. The kind picks the busbar class:
 * `connection`, `auth` and `tls` are ConnectionErrors (auth and TLS not retryable: the same credentials or
 * certificate fail again), `timeout` a TimeoutError, `closed` a ClosedError, `config` a ConfigError,
 * `topic` an InvalidTopicError, `header` an InvalidHeaderError, `refused` a PublishError (the broker
 * answered no to this message).
 */
export type NativeErrorKind =
  | 'connection'
  | 'auth'
  | 'tls'
  | 'timeout'
  | 'closed'
  | 'config'
  | 'topic'
  | 'header'
  | 'refused';

export interface NativeErrorClass {
  kind: NativeErrorKind;
  /** Overrides the class's default. */
  retryable?: boolean;
  /** Replaces the native message (after `what: `); it must not hold secrets. */
  message?: string;
}

/** The operation that failed: it decides the class when neither the driver nor the common rules can tell. */
export type NativeOperation = 'connect' | 'publish' | 'consume' | 'declare' | 'request' | 'close';

export interface NativeErrorContext {
  /** What was being done, the start of the message: `Publish to 'orders'`, `Connect to nats://host:4222`. */
  what: string;
  op: NativeOperation;
  /** Strings never to show (password, token, key); they are redacted from the message, stack and causes. */
  secrets: readonly string[];
}

/**
 * A driver's reading of its client's errors: a kind for what it recognises (or a finished BusbarError, for
 * the few that carry more, like a PayloadTooLargeError's sizes), undefined for the rest.
 */
export type NativeErrorClassifier = (error: unknown, clean: Error) => NativeErrorClass | BusbarError | undefined;

const SOCKET_CODES = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'ECONNABORTED',
  'ETIMEDOUT',
  'ENOTFOUND',
  'EAI_AGAIN',
  'EPIPE',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'EHOSTDOWN',
]);

// OpenSSL's verify errors as Node reports them, and Node's own hostname check.
// ERR_OSSL_*: OpenSSL refused the client's own TLS settings (a wrong key passphrase, a malformed key) while
// building the context: the same settings fail again, so it is a TLS error, not a connection to retry.
const TLS_CODE =
  /^(CERT_|DEPTH_ZERO_SELF_SIGNED_CERT|SELF_SIGNED_CERT_IN_CHAIN|UNABLE_TO_|ERR_TLS_|ERR_SSL_|ERR_OSSL_|HOSTNAME_MISMATCH)/;

// OpenSSL's words when the answer to the client's TLS hello is no TLS record at all: a plaintext port (the
// broker's own, or another protocol's) answered. The same port answers the same way again.
const NOT_TLS_REASON = /SSL routines:[^:\n]*:(wrong version number|packet length too long|unknown protocol)/;
const NOT_TLS_CODE = new Set([
  'ERR_SSL_WRONG_VERSION_NUMBER',
  'ERR_SSL_PACKET_LENGTH_TOO_LONG',
  'ERR_SSL_UNKNOWN_PROTOCOL',
]);
// OpenSSL's error line, `[read|write EPROTO ]<hex>:error:<hex>:SSL routines:<function>:<reason>:<file>:<line>:`.
const OPENSSL_LINE = /(?:(?:read|write) EPROTO )?[0-9A-F]{8,}:error:[0-9A-F]{8}:SSL routines:[^\n]*\n?/g;
// Node's words for a peer that hung up before the handshake was done.
const CLOSED_IN_HANDSHAKE = 'Client network socket disconnected before secure TLS connection was established';

/**
 * A TLS failure's text as a user can act on it: OpenSSL's line for an answer that is no TLS becomes what it
 * means, and a hang-up during the handshake gets its likely causes. Undefined when the text is neither.
 * For drivers whose classifier sees TLS errors before the common rules do (Kafka).
 */
export function explainTls(text: string, code?: string): string | undefined {
  if ((code !== undefined && NOT_TLS_CODE.has(code)) || NOT_TLS_REASON.test(text)) {
    const plain =
      'TLS handshake failed: the server is not speaking TLS (a plaintext port: check the scheme and the port of the URL, or the tls option)';
    const replaced = text.replace(OPENSSL_LINE, plain).trimEnd();
    return replaced.includes(plain) ? replaced : `${replaced}: ${plain}`;
  }
  if (text.includes(CLOSED_IN_HANDSHAKE)) {
    // Not said to be final: a server at its connection limit or a proxy without a backend hangs up the same way.
    return `${text} (a plaintext port hangs up on a TLS hello like this: check the scheme and the port of the URL; or the server is at its connection limit)`;
  }
  return undefined;
}

/** The first `code` along the cause chain (a driver often wraps the socket's error). */
function codeOf(error: unknown): string | undefined {
  let current: unknown = error;
  for (let depth = 0; depth < 5 && typeof current === 'object' && current !== null; depth++) {
    const code = (current as { code?: unknown }).code;
    if (typeof code === 'string') return code;
    current = (current as { cause?: unknown }).cause;
  }
  return undefined;
}

/** The rules every driver shares: socket errors, TLS verification failures, aborts. */
function commonClass(error: unknown, clean: Error): NativeErrorClass | undefined {
  const code = codeOf(error);
  const tls = explainTls(clean.message, code);
  if (tls !== undefined)
    return { kind: clean.message.includes(CLOSED_IN_HANDSHAKE) ? 'connection' : 'tls', message: tls };
  if (code !== undefined && SOCKET_CODES.has(code)) return { kind: 'connection' };
  // OpenSSL's own words need not name the cause: a wrong passphrase reads "bad decrypt", or, when the wrongly
  // decrypted bytes happen to pass the padding check, "DECODER routines::unsupported".
  if (code?.startsWith('ERR_OSSL_'))
    return {
      kind: 'tls',
      message: `${clean.message} (the client's TLS key or certificate could not be loaded: a wrong passphrase or a malformed key?)`,
    };
  if (code !== undefined && TLS_CODE.test(code)) return { kind: 'tls' };
  return undefined;
}

function fallback(op: NativeOperation): NativeErrorClass {
  return op === 'publish' ? { kind: 'refused', retryable: true } : { kind: 'connection' };
}

/**
 * A client library's error as a BusbarError with the right class and retryable flag. The native error
 * travels only as a sanitized copy in `cause` (clients attach commands and their arguments to errors: for
 * AUTH, the password). Order: a BusbarError stays as it is; then the driver's classifier; then the common
 * rules (socket codes, TLS); then the operation decides (a publish is a PublishError, anything else a
 * ConnectionError).
 */
export function nativeError(
  error: unknown,
  context: NativeErrorContext,
  classify?: NativeErrorClassifier,
): BusbarError {
  if (BusbarError.is(error)) return error;
  const clean = sanitizeError(error, context.secrets);
  const found = classify?.(error, clean) ?? commonClass(error, clean) ?? fallback(context.op);
  if (BusbarError.is(found)) return found;
  const text = `${context.what}: ${found.message ?? clean.message}`;
  const options = found.retryable === undefined ? { cause: clean } : { cause: clean, retryable: found.retryable };
  switch (found.kind) {
    case 'connection':
      return new ConnectionError(text, options);
    case 'auth':
    case 'tls':
      return new ConnectionError(text, { cause: clean, retryable: found.retryable ?? false });
    case 'timeout':
      return new TimeoutError(text, options);
    case 'closed':
      return withCause(new ClosedError(text), clean);
    case 'config':
      return new ConfigError(text, options);
    case 'topic':
      return withCause(new InvalidTopicError(text), clean);
    case 'header':
      return withCause(new InvalidHeaderError(text), clean);
    case 'refused':
      return new PublishError(text, { cause: clean, retryable: found.retryable ?? false });
  }
}

function withCause<E extends BusbarError>(error: E, cause: Error): E {
  Object.defineProperty(error, 'cause', { value: cause, configurable: true, writable: true });
  return error;
}
