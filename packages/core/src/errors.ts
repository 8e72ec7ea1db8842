/**
 * busbar's error model: every error the SDK throws or rejects with is a
 * {@link BusbarError} with a stable `code` and a `retryable` flag, so callers can
 * branch on it without string matching. Brands use `Symbol.for` so that
 * `BusbarError.is()` works across duplicate installs of `@busbar/core`.
 */

const BRAND = Symbol.for('busbar.error');

export type BusbarErrorCode =
  | 'BUSBAR_CONFIG'
  | 'BUSBAR_DRIVER_MISSING'
  | 'BUSBAR_CONNECTION'
  | 'BUSBAR_PUBLISH'
  | 'BUSBAR_TIMEOUT'
  | 'BUSBAR_CLOSED'
  | 'BUSBAR_INVALID_TOPIC'
  | 'BUSBAR_INVALID_HEADER'
  | 'BUSBAR_PAYLOAD_TOO_LARGE'
  | 'BUSBAR_SERIALIZATION'
  | 'BUSBAR_DECODE'
  | 'BUSBAR_VALIDATION'
  | 'BUSBAR_UNSUPPORTED'
  | 'BUSBAR_HANDLER_TIMEOUT'
  | 'BUSBAR_DUPLICATE'
  | 'BUSBAR_PERMANENT'
  | 'BUSBAR_ABORTED'
  | 'BUSBAR_NO_RESPONDERS'
  | 'BUSBAR_REMOTE';

export interface BusbarErrorOptions {
  cause?: unknown;
  retryable?: boolean;
}

export class BusbarError extends Error {
  readonly code: BusbarErrorCode;
  readonly retryable: boolean;
  declare readonly cause?: unknown;

  constructor(code: BusbarErrorCode, message: string, options: BusbarErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.code = code;
    this.retryable = options.retryable ?? false;
    Object.defineProperty(this, BRAND, { value: true });
  }

  override get name(): string {
    return this.constructor.name;
  }

  /** True for any busbar error, from this install or another copy of `@busbar/core`. Optionally checks the code. */
  static is(value: unknown, code?: BusbarErrorCode): value is BusbarError {
    if (typeof value !== 'object' || value === null) return false;
    if ((value as Record<symbol, unknown>)[BRAND] !== true) return false;
    return code === undefined || (value as BusbarError).code === code;
  }

  toJSON(): Record<string, unknown> {
    return { name: this.name, code: this.code, message: this.message, retryable: this.retryable };
  }
}

/** Invalid options or URL. The message names the offending field path. */
export class ConfigError extends BusbarError {
  constructor(message: string, options?: BusbarErrorOptions) {
    super('BUSBAR_CONFIG', message, options);
  }
}

/** The URL scheme needs a driver package that is not installed. */
export class DriverMissingError extends BusbarError {
  readonly packageName: string;
  constructor(packageName: string, scheme: string, options?: BusbarErrorOptions) {
    super(
      'BUSBAR_DRIVER_MISSING',
      `The '${scheme}' scheme needs the ${packageName} package: run \`npm install ${packageName}\`. In a bundle ` +
        `(esbuild, webpack, a serverless function) that cannot load it by name, pass it explicitly: ` +
        `\`import { driver } from '${packageName}'\` and \`connect({ url, driver })\``,
      options,
    );
    this.packageName = packageName;
  }
}

/** The broker could not be reached or the connection was lost. Retryable. */
export class ConnectionError extends BusbarError {
  constructor(message: string, options?: BusbarErrorOptions) {
    super('BUSBAR_CONNECTION', message, { retryable: true, ...options });
  }
}

/** The broker refused a publish (nack, returned as unroutable, channel closed). */
export class PublishError extends BusbarError {
  constructor(message: string, options?: BusbarErrorOptions) {
    super('BUSBAR_PUBLISH', message, { retryable: true, ...options });
  }
}

/**
 * An operation did not complete in time. For a publish the outcome is unknown:
 * the broker may or may not have the message, so a retry may duplicate it.
 */
export class TimeoutError extends BusbarError {
  constructor(message: string, options?: BusbarErrorOptions) {
    super('BUSBAR_TIMEOUT', message, { retryable: true, ...options });
  }
}

/** The bus or subscription is closed (or closing). */
export class ClosedError extends BusbarError {
  constructor(message: string) {
    super('BUSBAR_CLOSED', message);
  }
}

export class InvalidTopicError extends BusbarError {
  constructor(message: string) {
    super('BUSBAR_INVALID_TOPIC', message);
  }
}

export class InvalidHeaderError extends BusbarError {
  constructor(message: string) {
    super('BUSBAR_INVALID_HEADER', message);
  }
}

export class PayloadTooLargeError extends BusbarError {
  readonly size: number;
  readonly limit: number;
  constructor(size: number, limit: number, topic: string) {
    super('BUSBAR_PAYLOAD_TOO_LARGE', `Message for '${topic}' is ${size} bytes, over the limit of ${limit} bytes`);
    this.size = size;
    this.limit = limit;
  }
}

/** A payload could not be encoded by the topic's codec (circular, BigInt, ...). */
export class SerializationError extends BusbarError {
  constructor(message: string, options?: BusbarErrorOptions) {
    super('BUSBAR_SERIALIZATION', message, options);
  }
}

/** A received body could not be decoded by the topic's codec. The message is dead-lettered without retries. */
export class DecodeError extends BusbarError {
  constructor(message: string, options?: BusbarErrorOptions) {
    super('BUSBAR_DECODE', message, options);
  }
}

export interface ValidationIssue {
  message: string;
  path?: ReadonlyArray<PropertyKey>;
}

/** A payload failed the topic's schema (on publish: nothing sent; on receive: dead-lettered without retries). */
export class ValidationError extends BusbarError {
  readonly issues: readonly ValidationIssue[];
  constructor(message: string, issues: readonly ValidationIssue[]) {
    super('BUSBAR_VALIDATION', message);
    this.issues = issues;
  }
}

/**
 * The caller's AbortSignal fired. For a publish aborted after it was sent, the outcome is unknown (as with a
 * timeout): the broker may have the message.
 */
export class AbortedError extends BusbarError {
  constructor(message: string, options?: BusbarErrorOptions) {
    super('BUSBAR_ABORTED', message, options);
  }
}

/** A request found nobody serving its topic (where the broker can tell: NATS, memory). Retryable. */
export class NoRespondersError extends BusbarError {
  constructor(topic: string) {
    super('BUSBAR_NO_RESPONDERS', `No responder serves '${topic}'`, { retryable: true });
  }
}

/**
 * The responder failed the request: `remoteCode` is its error's code (a BusbarError code, or the error's name),
 * the message is bounded; no stack crosses the wire unless the responder was configured to send it.
 */
export class RemoteError extends BusbarError {
  readonly remoteCode: string;
  constructor(remoteCode: string, message: string) {
    super('BUSBAR_REMOTE', message);
    this.remoteCode = remoteCode;
  }
}

/** The transport cannot do what was asked (for example a wildcard subscription on a broker without them). */
export class UnsupportedError extends BusbarError {
  constructor(message: string) {
    super('BUSBAR_UNSUPPORTED', message);
  }
}

export class HandlerTimeoutError extends BusbarError {
  constructor(timeoutMs: number) {
    super('BUSBAR_HANDLER_TIMEOUT', `Handler did not settle within ${timeoutMs} ms`, { retryable: true });
  }
}

/**
 * Throw from a handler to say "retrying will not help": the message is
 * dead-lettered at once instead of being retried.
 */
export class PermanentError extends BusbarError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('BUSBAR_PERMANENT', message, options);
  }
}

/** True when retrying the message cannot succeed: skip straight to the dead letter. */
export function isPermanentFailure(error: unknown): boolean {
  return (
    BusbarError.is(error, 'BUSBAR_PERMANENT') ||
    BusbarError.is(error, 'BUSBAR_DECODE') ||
    BusbarError.is(error, 'BUSBAR_VALIDATION')
  );
}
