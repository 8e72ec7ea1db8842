import { BusbarError, ConnectionError, PublishError } from '@busbar/core';
import { sanitizeError } from '@busbar/core/transport';

const CONNECTION =
  /ECONNREFUSED|ECONNRESET|ETIMEDOUT|ENOTFOUND|EAI_AGAIN|EPIPE|Connection is closed|connect ETIMEDOUT|MaxRetriesPerRequest|WRONGPASS|NOAUTH|NOPERM|LOADING|CLUSTERDOWN|Stream isn't writeable/;

/**
 * Maps an ioredis error to a busbar error. ioredis attaches the command and
 * its arguments to errors (for AUTH: the password), so the native error only
 * ever travels as a sanitized copy.
 */
export function toBusbarError(error: unknown, secrets: readonly string[], what: string): BusbarError {
  if (BusbarError.is(error)) return error;
  const clean = sanitizeError(error, secrets);
  const message = `${what}: ${clean.message}`;
  if (CONNECTION.test(clean.message) || CONNECTION.test(String((clean as { code?: unknown }).code ?? ''))) {
    return new ConnectionError(message, { cause: clean });
  }
  // OOM (maxmemory reached) can clear up; WRONGTYPE or a script error will not.
  const retryable = /^(OOM|BUSY|TRYAGAIN|MOVED|ASK|READONLY)/.test(clean.message);
  return new PublishError(message, { cause: clean, retryable });
}

/** True for a reply error whose message starts with `prefix` (e.g. `BUSYGROUP`, `NOGROUP`). */
export function isReplyError(error: unknown, prefix: string): boolean {
  return error instanceof Error && error.message.startsWith(prefix);
}
