import { BusbarError, ConfigError, ConnectionError, PublishError } from '@busbar/core';
import { sanitizeError } from '@busbar/core/transport';

/** AMQP reply codes that mean the request itself is wrong, not that the broker is away. */
const CONFIG_CODES = new Set([403, 404, 406, 530, 540]);

function replyCode(error: unknown): number | undefined {
  const code = (error as { code?: unknown } | null)?.code;
  return typeof code === 'number' ? code : undefined;
}

/** True for a refused login: retrying the connection cannot help. */
export function isAuthFailure(error: unknown): boolean {
  const text = String((error as Error | null)?.message ?? error);
  return replyCode(error) === 403 || /ACCESS_REFUSED|ACCESS-REFUSED|authentication/i.test(text);
}

/** A native amqplib / socket error as a BusbarError; secrets are always scrubbed. */
export function toBusbarError(error: unknown, what: string, secrets: readonly string[]): BusbarError {
  if (BusbarError.is(error)) return error;
  const clean = sanitizeError(error, secrets);
  const code = replyCode(error);
  const message = `${what}: ${clean.message}`;
  if (code !== undefined && CONFIG_CODES.has(code) && !isAuthFailure(error))
    return new ConfigError(message, { cause: clean });
  if (what.startsWith('Publish')) return new PublishError(message, { cause: clean });
  return new ConnectionError(message, { cause: clean });
}
