/**
 * Credentials must never reach an error message, a stack, a `cause`, a log
 * line or `util.inspect` output. Drivers collect the secrets they were given
 * (URL password, options) and pass every foreign error through
 * {@link sanitizeError} before it leaves busbar.
 */

const MASK = '***';

/**
 * `amqp://user:secret@host/vhost` -> `amqp://user:***@host/vhost`, on the parsed URL. A string that does not
 * parse shows only what cannot be a credential: its scheme and what follows the last `@` (a password may
 * hold `/`, `:`, `#` or `@` itself, so no pattern over the text can tell where it ends).
 */
export function redactUrl(url: string | URL): string {
  let parsed: URL;
  try {
    parsed = typeof url === 'string' ? new URL(url) : url;
  } catch {
    return redactUnparsable(String(url));
  }
  if (!parsed.password) return parsed.toString();
  const copy = new URL(parsed.toString());
  copy.password = MASK;
  return copy.toString();
}

function redactUnparsable(text: string): string {
  const scheme = /^([a-z][a-z0-9+.-]*:)(\/\/)?/i.exec(text);
  if (!scheme) return '(unparsable URL)';
  const rest = text.slice(scheme[0].length);
  const at = rest.lastIndexOf('@');
  if (at >= 0) return `${scheme[0]}${MASK}@${rest.slice(at + 1)}`;
  // No '@': no credentials by the URL grammar, but a mistyped one may still hold a password; keep the host only.
  const host = /^[^/?#:]*/.exec(rest)?.[0] ?? '';
  return `${scheme[0]}${host}${rest.length > host.length ? '/...' : ''}`;
}

/** `decodeURIComponent` that never throws: a malformed escape (`%zz`) is taken literally. */
export function safeDecode(text: string): string {
  try {
    return decodeURIComponent(text);
  } catch {
    return text;
  }
}

/** Replaces every occurrence of each secret (and its URL-encoded form) with `***`. */
export function redactText(text: string, secrets: readonly string[]): string {
  // The known secrets first, longest first (one may contain another), in every form a client may print.
  let out = text;
  const forms = new Set<string>();
  for (const secret of secrets) {
    if (!secret) continue;
    forms.add(secret);
    forms.add(encodeURIComponent(secret));
    forms.add(safeDecode(secret));
    forms.add(encodeURIComponent(secret).toLowerCase());
  }
  for (const form of [...forms].sort((a, b) => b.length - a.length)) {
    if (form.length > 0) out = out.split(form).join(MASK);
  }
  // Then any URL with userinfo that some library printed: everything between '//' and the '@' goes.
  return out.replace(/(\b[a-z][a-z0-9+.-]*:\/\/)([^\s@/]*(?:\/[^\s@/]*)*)@/gi, (whole, scheme: string, info: string) =>
    info.includes(':') ? `${scheme}${info.slice(0, info.indexOf(':'))}:${MASK}@` : whole,
  );
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
