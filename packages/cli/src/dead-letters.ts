import type { DeadLetterInfo, Message } from '@busbar/core';
import { duration, MAX_MS, positiveInt, type Values } from './args.js';
import { iso, jsonPayload } from './format.js';

export interface Selection {
  readonly filter: ((message: Message<unknown>) => boolean) | undefined;
  readonly limit: number | undefined;
  readonly idleMs: number | undefined;
  /** The command's: the first Ctrl-C ends a walk at once instead of after its idle wait. */
  readonly signal?: AbortSignal;
}

/**
 * `--error` (substring of the error message or name), `--older-than` / `--newer-than` (age of the failure that
 * dead-lettered it), `--id` (repeatable), `--limit`, `--idle`: the same selection for every dlq command, so a
 * `--dry-run` shows exactly what the real run moves.
 */
export function selection(values: Values, now = Date.now(), signal?: AbortSignal): Selection {
  const text = values.error;
  const olderThan = duration(values['older-than'], 'older-than');
  const newerThan = duration(values['newer-than'], 'newer-than');
  const ids = values.id === undefined ? undefined : new Set(values.id);
  const tests: ((m: Message<unknown>) => boolean)[] = [];
  if (text !== undefined) {
    tests.push(
      (m) => (m.deadLetter?.errorMessage ?? '').includes(text) || (m.deadLetter?.errorName ?? '').includes(text),
    );
  }
  if (olderThan !== undefined) tests.push((m) => now - deadAt(m) >= olderThan);
  if (newerThan !== undefined) tests.push((m) => now - deadAt(m) < newerThan);
  if (ids !== undefined) tests.push((m) => ids.has(m.id));
  return {
    filter: tests.length === 0 ? undefined : (m) => tests.every((test) => test(m)),
    limit: positiveInt(values.limit, 'limit'),
    idleMs: positiveInt(values.idle, 'idle', MAX_MS),
    ...(signal === undefined ? {} : { signal }),
  };
}

/** When the message was dead-lettered (its last failure); the publish time for a message without metadata. */
function deadAt(message: Message<unknown>): number {
  const at = message.deadLetter?.lastFailureAt.getTime();
  return at !== undefined && at > 0 ? at : message.timestamp.getTime();
}

export function errorText(info: DeadLetterInfo | undefined): string {
  if (info === undefined) return '(no dead-letter metadata)';
  return info.errorName ? `${info.errorName}: ${info.errorMessage}` : info.errorMessage;
}

export interface Summary {
  readonly count: number;
  readonly oldest: Date | undefined;
  readonly newest: Date | undefined;
  readonly errors: { error: string; errorName: string; errorMessage: string; count: number }[];
}

export function summarize(messages: readonly Message<unknown>[]): Summary {
  const errors = new Map<string, Summary['errors'][number]>();
  let oldest: number | undefined;
  let newest: number | undefined;
  for (const m of messages) {
    const at = deadAt(m);
    oldest = oldest === undefined ? at : Math.min(oldest, at);
    newest = newest === undefined ? at : Math.max(newest, at);
    const error = errorText(m.deadLetter);
    const entry = errors.get(error) ?? {
      error,
      errorName: m.deadLetter?.errorName ?? '',
      errorMessage: m.deadLetter?.errorMessage ?? '',
      count: 0,
    };
    entry.count++;
    errors.set(error, entry);
  }
  return {
    count: messages.length,
    oldest: oldest === undefined ? undefined : new Date(oldest),
    newest: newest === undefined ? undefined : new Date(newest),
    errors: [...errors.values()].sort((a, b) => b.count - a.count || a.error.localeCompare(b.error)),
  };
}

/** One dead letter for --json: everything `dlq show` prints, dates as ISO strings, bytes as base64. */
export function deadLetterJson(m: Message<unknown>, withStack: boolean): Record<string, unknown> {
  const info = m.deadLetter;
  return {
    id: m.id,
    topic: m.topic,
    key: m.key ?? null,
    timestamp: iso(m.timestamp),
    contentType: m.contentType ?? null,
    headers: m.headers,
    payload: jsonPayload(m.payload),
    deadLetter:
      info === undefined
        ? null
        : {
            errorName: info.errorName,
            errorMessage: info.errorMessage,
            ...(withStack ? { errorStack: info.errorStack } : {}),
            attempts: info.attempts,
            topic: info.topic,
            group: info.group,
            firstFailureAt: iso(info.firstFailureAt),
            lastFailureAt: iso(info.lastFailureAt),
          },
  };
}
