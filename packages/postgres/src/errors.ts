import { BusbarError, ConfigError, ConnectionError, TimeoutError } from '@busbar/core';
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
  clean.message = `${context}: ${clean.message}`;
  return clean;
}
