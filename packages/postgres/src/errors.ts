import { BusbarError, ClosedError, ConfigError, ConnectionError, TimeoutError } from '@busbar/core';
import { sanitizeError } from '@busbar/core/transport';

/** SQLSTATE classes and socket errors that mean "the connection, not the statement, failed": worth retrying. */
const CONNECTION_CODES = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'ENOTFOUND',
  'EAI_AGAIN',
  'ETIMEDOUT',
  'EPIPE',
  'EHOSTUNREACH',
]);
const RETRYABLE_SQLSTATE = /^(08|53|57P0|40001|40P01)/;

function codeOf(error: unknown): string | undefined {
  const code = (error as { code?: unknown } | null)?.code;
  return typeof code === 'string' ? code : undefined;
}

export function isConnectionFailure(error: unknown): boolean {
  if (BusbarError.is(error, 'BUSBAR_CONNECTION')) return true;
  const code = codeOf(error);
  if (code && (CONNECTION_CODES.has(code) || RETRYABLE_SQLSTATE.test(code))) return true;
  const message = error instanceof Error ? error.message : '';
  return /Connection terminated|connection timeout|Client has encountered a connection error|timeout exceeded when trying to connect/i.test(
    message,
  );
}

/** A missing relation: the migration was not run (or runs against another table name). */
export function isUndefinedTable(error: unknown): boolean {
  return codeOf(error) === '42P01';
}

/**
 * pg error -> BusbarError: connection failures become ConnectionError
 * (retryable), a missing table a ConfigError that says which migration to
 * run, anything else a sanitized copy. Secrets never pass through.
 */
export function mapPgError(
  error: unknown,
  secrets: readonly string[],
  context: string,
  missingTableHint?: string,
): Error {
  if (BusbarError.is(error)) return error;
  const clean = sanitizeError(error, secrets);
  if (isUndefinedTable(error) && missingTableHint) {
    return new ConfigError(`${context}: ${clean.message}; ${missingTableHint}`, { cause: clean });
  }
  // pg's own `query_timeout` fired: the statement may or may not have run.
  if (error instanceof Error && error.message === 'Query read timeout') {
    return new TimeoutError(`${context}: PostgreSQL did not answer in time (outcome unknown)`, { cause: clean });
  }
  if (isConnectionFailure(error)) {
    return new ConnectionError(`${context}: ${clean.message || codeOf(error) || 'connection failed'}`, {
      cause: clean,
    });
  }
  const typed = typedPgError(error, `${context}: ${clean.message}`, clean);
  if (typed) return typed;
  clean.message = `${context}: ${clean.message}`;
  return clean;
}

/** What the statement or the settings got wrong, where no retry helps: typed, so callers can tell. */
function typedPgError(error: unknown, message: string, cause: Error): BusbarError | undefined {
  const code = codeOf(error);
  const text = error instanceof Error ? error.message : '';
  if (/Cannot use a pool after calling end|Client was closed and is not queryable/.test(text)) {
    return new ClosedError(message);
  }
  // 3D000 no such database, 28xxx authentication, ENOENT a certificate file, TLS the server does not offer, data
  // exceptions (22xxx: a NUL in text, a value out of range, a NaN lease) and limits (54xxx: an index row too large).
  if (
    code === '3D000' ||
    code?.startsWith('28') ||
    code?.startsWith('22') ||
    code?.startsWith('54') ||
    code === 'ENOENT' ||
    /does not support SSL|self[- ]signed|certificate/i.test(text)
  ) {
    return new ConfigError(message, { cause });
  }
  return undefined;
}
