import type { DeadLetterInfo } from './message.js';
import { HEADER } from './transport/headers.js';

/** `<topic>.<group>.dlq`, or `<topic>.dlq` for a broadcast subscription. */
export function deadLetterTopic(topic: string, group?: string): string {
  return group === undefined ? `${topic}.dlq` : `${topic}.${group}.dlq`;
}

const MAX_MESSAGE = 1_000;
const MAX_STACK = 2_000;

/** Header values travel on every broker, some of which (NATS) forbid line breaks: escape them JSON-style. */
function escapeHeader(text: string, max: number): string {
  const cut = text.length > max ? `${text.slice(0, max)}...` : text;
  return JSON.stringify(cut).slice(1, -1);
}

function unescapeHeader(text: string | undefined): string {
  if (text === undefined) return '';
  try {
    return JSON.parse(`"${text}"`) as string;
  } catch {
    return text;
  }
}

export interface DeadLetterFacts {
  readonly error: unknown;
  readonly attempts: number;
  readonly topic: string;
  readonly group: string | undefined;
  readonly now: number;
}

/** The original headers plus the failure metadata DESIGN.md lists. */
export function deadLetterHeaders(
  original: Readonly<Record<string, string>>,
  facts: DeadLetterFacts,
): Record<string, string> {
  const error = facts.error instanceof Error ? facts.error : new Error(String(facts.error));
  const headers: Record<string, string> = {};
  for (const [name, value] of Object.entries(original)) {
    if (name !== HEADER.attempt && name !== HEADER.firstFailure) headers[name] = value;
  }
  const first = original[HEADER.firstFailure] ?? String(facts.now);
  headers[HEADER.dlErrorName] = escapeHeader(error.name, 200);
  headers[HEADER.dlErrorMessage] = escapeHeader(error.message, MAX_MESSAGE);
  headers[HEADER.dlErrorStack] = escapeHeader(error.stack ?? '', MAX_STACK);
  headers[HEADER.dlAttempts] = String(facts.attempts);
  headers[HEADER.dlTopic] = facts.topic;
  headers[HEADER.dlGroup] = facts.group ?? '';
  headers[HEADER.dlFirstFailure] = first;
  headers[HEADER.dlLastFailure] = String(facts.now);
  return headers;
}

/** The failure metadata of a dead letter, or undefined for an ordinary message. */
export function parseDeadLetter(headers: Readonly<Record<string, string>>): DeadLetterInfo | undefined {
  const topic = headers[HEADER.dlTopic];
  if (topic === undefined) return undefined;
  return {
    errorName: unescapeHeader(headers[HEADER.dlErrorName]),
    errorMessage: unescapeHeader(headers[HEADER.dlErrorMessage]),
    errorStack: unescapeHeader(headers[HEADER.dlErrorStack]),
    attempts: Number(headers[HEADER.dlAttempts] ?? 0),
    topic,
    group: headers[HEADER.dlGroup] ?? '',
    firstFailureAt: new Date(Number(headers[HEADER.dlFirstFailure] ?? 0)),
    lastFailureAt: new Date(Number(headers[HEADER.dlLastFailure] ?? 0)),
  };
}

/** Headers for a re-driven message: failure metadata removed, redrive counter bumped. */
export function redriveHeaders(dead: Readonly<Record<string, string>>): Record<string, string> {
  const headers: Record<string, string> = {};
  for (const [name, value] of Object.entries(dead)) {
    if (!name.startsWith('busbar-dl-') && name !== HEADER.attempt && name !== HEADER.firstFailure)
      headers[name] = value;
  }
  headers[HEADER.redrive] = String(Number(dead[HEADER.redrive] ?? 0) + 1);
  return headers;
}
