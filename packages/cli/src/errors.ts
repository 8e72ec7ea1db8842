import { BusbarError, ConfigError } from '@busbar/core';
import { printable } from './format.js';

/** A mistake on the command line (unknown flag, missing topic, bad number): exit status 2. */
export class UsageError extends ConfigError {}

export const EXIT = { ok: 0, failed: 1, usage: 2, interrupted: 130 } as const;

/**
 * `busbar: <message> (<code>)`, one line, no stack. Every secret the user gave (the URL password in its raw,
 * encoded and decoded forms) is masked even in errors that did not come through busbar's own redaction.
 */
export function describeError(error: unknown, secrets: readonly string[]): string {
  const code = BusbarError.is(error) ? error.code : 'ERROR';
  const text = error instanceof Error ? error.message : String(error);
  let message = text.split('\n')[0] ?? '';
  for (const secret of expandSecrets(secrets)) message = message.split(secret).join('***');
  // A broker's error text (or a topic name in it) must not drive the operator's terminal.
  return `busbar: ${printable(message)} (${code})`;
}

function expandSecrets(secrets: readonly string[]): string[] {
  const forms = new Set<string>();
  for (const secret of secrets) {
    if (!secret) continue;
    forms.add(secret);
    forms.add(encodeURIComponent(secret));
    try {
      forms.add(decodeURIComponent(secret));
    } catch {
      // a malformed escape is only used literally
    }
  }
  return [...forms].filter((s) => s.length > 0).sort((a, b) => b.length - a.length);
}

/** The password of a URL (as written in it), for masking; nothing when it does not parse or has none. */
export function urlSecrets(url: string | undefined): string[] {
  if (url === undefined) return [];
  try {
    const parsed = new URL(url);
    return parsed.password ? [parsed.password] : [];
  } catch {
    // Unparsable (e.g. a seed list): whatever sits between the first ':' after '//' and the last '@'.
    const match = /^[a-z][a-z0-9+.-]*:\/\/[^:/@]*:(.*)@[^@]*$/i.exec(url);
    return match?.[1] ? [match[1]] : [];
  }
}
