import {
  BusbarError,
  ConfigError,
  ConnectionError,
  InvalidHeaderError,
  PayloadTooLargeError,
  PublishError,
  TimeoutError,
} from '@busbar/core';
import { sanitizeError } from '@busbar/core/transport';

const CONNECTION_CODES = new Set([
  'CONNECTION_CLOSED',
  'CONNECTION_DRAINING',
  'CONNECTION_REFUSED',
  'CONNECTION_TIMEOUT',
  'DISCONNECT',
  'BAD_AUTHENTICATION',
  'AUTHORIZATION_VIOLATION',
  'AUTHENTICATION_EXPIRED',
  'AUTHENTICATION_TIMEOUT',
  'PERMISSIONS_VIOLATION',
  'TLS',
]);

/** The JetStream API error code (e.g. 10058 stream name in use), when there is one. */
export function apiErrorCode(error: unknown): number | undefined {
  const api = (error as { api_error?: { err_code?: unknown } } | undefined)?.api_error;
  return typeof api?.err_code === 'number' ? api.err_code : undefined;
}

export function isNotFound(error: unknown): boolean {
  const code = apiErrorCode(error);
  if (code === 10059 || code === 10014) return true;
  const message = error instanceof Error ? error.message : '';
  return message === 'stream not found' || message === 'consumer not found';
}

/** A native (nats.js / server) error as a busbar error, redacted. `what` says what was being done. */
export function toBusbarError(error: unknown, what: string, secrets: readonly string[]): BusbarError {
  if (BusbarError.is(error)) return error;
  const clean = sanitizeError(error, secrets);
  const code = (error as { code?: unknown } | undefined)?.code;
  const text = `${what}: ${clean.message}`;
  if (code === 'TIMEOUT') return new TimeoutError(text, { cause: clean });
  if (code === 'BAD_HEADER') return new InvalidHeaderError(text);
  if (typeof code === 'string' && CONNECTION_CODES.has(code)) return new ConnectionError(text, { cause: clean });
  if (code === 'INVALID_OPTION' || code === 'BAD_SUBJECT') return new ConfigError(text, { cause: clean });
  if (apiErrorCode(error) !== undefined) return new PublishError(text, { cause: clean, retryable: false });
  return new ConnectionError(text, { cause: clean });
}

/**
 * A native error nats.js throws synchronously from `publish()` (it checks the server's `max_payload` and the
 * header syntax itself) as busbar's typed error for that record, or undefined for anything else.
 */
export function publishRefusal(error: unknown, topic: string, size: number, max: number): BusbarError | undefined {
  const code = (error as { code?: unknown } | undefined)?.code;
  if (code === 'MAX_PAYLOAD_EXCEEDED') return new PayloadTooLargeError(size, max, topic);
  if (code === 'BAD_HEADER') {
    return new InvalidHeaderError(
      `A header of the message for '${topic}' cannot be carried by NATS: ${(error as Error).message}`,
    );
  }
  return undefined;
}
