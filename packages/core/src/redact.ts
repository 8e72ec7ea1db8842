/**
 * Credentials must never reach an error message, a stack, a `cause`, a log
 * line or `util.inspect` output. Drivers collect the secrets they were given
 * (URL password, options) and pass every foreign error through
 * {@link sanitizeError} before it leaves busbar.
 */

const MASK = '***';

/** `amqp://user:secret@host/vhost` -> `amqp://user:***@host/vhost`. Works on unparsable strings too. */
export function redactUrl(url: string | URL): string {
  const text = String(url);
  try {
    const parsed = new URL(text);
    if (parsed.password) parsed.password = MASK;
    return parsed.toString();
  } catch {
    return text.replace(/(\/\/[^:/@\s]*:)[^@/\s]*@/g, `$1${MASK}@`);
  }
}

/** Replaces every occurrence of each secret (and its URL-encoded form) with `***`. */
export function redactText(text: string, secrets: readonly string[]): string {
  let out = text.replace(/(\b[a-z][a-z0-9+.-]*:\/\/[^:/@\s]*:)[^@/\s]*@/gi, `$1${MASK}@`);
  for (const secret of secrets) {
    if (!secret) continue;
    out = out.split(secret).join(MASK);
    const encoded = encodeURIComponent(secret);
    if (encoded !== secret) out = out.split(encoded).join(MASK);
  }
  return out;
}

/**
 * A copy of `error` that is safe to expose: name, message, stack and code are
 * redacted, the cause chain is copied the same way (to a bounded depth), and
 * nothing else of the original object (e.g. ioredis' `command.args`, which hold
 * the AUTH password) is kept.
 */
export function sanitizeError(error: unknown, secrets: readonly string[], depth = 0): Error {
  if (!(error instanceof Error)) {
    return new Error(redactText(String(error), secrets));
  }
  const copy = new Error(redactText(error.message, secrets));
  Object.defineProperty(copy, 'name', { value: error.name, configurable: true, writable: true });
  copy.stack = redactText(error.stack ?? `${error.name}: ${error.message}`, secrets);
  const code = (error as { code?: unknown }).code;
  if (typeof code === 'string' || typeof code === 'number') {
    Object.defineProperty(copy, 'code', { value: code, enumerable: true });
  }
  if (error.cause !== undefined && depth < 4) {
    Object.defineProperty(copy, 'cause', {
      value: sanitizeError(error.cause, secrets, depth + 1),
      configurable: true,
      writable: true,
    });
  }
  return copy;
}
