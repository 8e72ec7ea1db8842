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

// RabbitMQ's close reasons: "PRECONDITION_FAILED - inequivalent arg 'x-queue-type' for queue 'q' in vhost '/':
// received the value 'quorum' of type 'longstr' but current is none" and "NOT_FOUND - no exchange 'x' in vhost '/'".
const INEQUIVALENT =
  /inequivalent arg '([^']*)' for (exchange|queue) '((?:[^']|'(?! in vhost))*)' in vhost '[^']*': (.*?)"?$/s;
const NOT_FOUND = /NOT_FOUND - no (exchange|queue) '((?:[^']|'(?! in vhost))*)' in vhost/;

/**
 * The broker's reason for a refused declaration, said in busbar's terms: which exchange or queue, which of its
 * arguments differs, and what to do about it. Undefined for any other error.
 */
export function topologyMismatch(text: string): string | undefined {
  const differs = INEQUIVALENT.exec(text);
  if (differs) {
    const [, arg, kind, name, detail] = differs;
    const fix =
      kind === 'exchange'
        ? "use another 'exchange' name, or topology: 'existing' to use it as it is"
        : "match the options it was declared with (queueType, limits, queueExpiresMs), or topology: 'existing' to use it as it is";
    return `${kind} '${name}' exists with other settings (PRECONDITION_FAILED): its argument '${arg}' differs (${detail}); ${fix}`;
  }
  const missing = NOT_FOUND.exec(text);
  if (missing) return `${missing[1]} '${missing[2]}' does not exist (NOT_FOUND)`;
  return undefined;
}

/** A native amqplib / socket error as a BusbarError; secrets are always scrubbed. */
export function toBusbarError(error: unknown, what: string, secrets: readonly string[]): BusbarError {
  if (BusbarError.is(error)) return error;
  const clean = sanitizeError(error, secrets);
  const code = replyCode(error);
  const mismatch = code === 406 || code === 404 ? topologyMismatch(clean.message) : undefined;
  if (mismatch !== undefined) return new ConfigError(`${what}: ${mismatch}`, { cause: clean });
  const message = `${what}: ${clean.message}`;
  if (code !== undefined && CONFIG_CODES.has(code) && !isAuthFailure(error))
    return new ConfigError(message, { cause: clean });
  if (what.startsWith('Publish')) return new PublishError(message, { cause: clean });
  return new ConnectionError(message, { cause: clean });
}
