import type { DeadLetterInfo } from './message.js';
import { RESERVED_HEADER_PREFIX } from './names.js';
import { toFailure } from './thrown.js';
import { HEADER, numericHeader } from './transport/headers.js';
import type { OutgoingRecord } from './transport/spi.js';

/**
 * `<topic>.<group>.dlq`, or `<topic>.dlq` for a broadcast subscription. Named after the subscription, so a
 * wildcard subscription has one dead-letter topic whatever names its messages arrive with (a foreign
 * producer's name may not even be a valid busbar topic): `*` becomes `any` and `#` becomes `all`
 * (`orders.*` in group `billing` -> `orders.any.billing.dlq`).
 */
export function deadLetterTopic(topic: string, group?: string): string {
  const base = topic.includes('*') || topic.includes('#') ? patternName(topic) : topic;
  return group === undefined ? `${base}.dlq` : `${base}.${group}.dlq`;
}

function patternName(pattern: string): string {
  return pattern
    .split('.')
    .map((segment) => (segment === '*' ? 'any' : segment === '#' ? 'all' : segment))
    .join('.');
}

const MAX_NAME = 200;
const MAX_MESSAGE = 1_000;
const MAX_STACK = 2_000;
/** Longer than any busbar topic: a dead letter of a wildcard subscription names the foreign topic it came from. */
const MAX_TOPIC = 1_024;
/** The last millisecond a Date can hold. */
const MAX_DATE_MS = 8.64e15;

/** At most `max` characters (and a marker that it was cut), valid UTF-16 whatever the input. */
function bounded(text: string, max: number): string {
  return (text.length > max ? `${text.slice(0, max)}...` : text).toWellFormed();
}

/** Header values travel on every broker, some of which (NATS) forbid line breaks: escape them JSON-style. */
function escapeHeader(text: string, max: number): string {
  const cut = bounded(text, max);
  // JSON escapes C0 controls; DEL, C1 controls and non-characters stay raw there, and MQTT brokers drop
  // the connection of a client that sends them: escape those too (JSON.parse reads them back).
  return JSON.stringify(cut)
    .slice(1, -1)
    .replace(/[\u007f-\u009f\ufdd0-\ufdef\ufffe\uffff]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
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

/** The original headers plus the failure metadata (error name, message, stack, attempts, topic, group, times). */
export function deadLetterHeaders(
  original: Readonly<Record<string, string>>,
  facts: DeadLetterFacts,
): Record<string, string> {
  const error = toFailure(facts.error);
  const headers: Record<string, string> = {};
  for (const [name, value] of Object.entries(original)) {
    if (name !== HEADER.attempt && name !== HEADER.firstFailure) headers[name] = value;
  }
  // A first-failure time carried in from the wire (a foreign or damaged retry header) is only kept when valid.
  const carried = timeHeader(original[HEADER.firstFailure]);
  const first = carried > 0 ? String(carried) : String(facts.now);
  headers[HEADER.dlErrorName] = escapeHeader(error.name, MAX_NAME);
  headers[HEADER.dlErrorMessage] = escapeHeader(error.message, MAX_MESSAGE);
  headers[HEADER.dlErrorStack] = escapeHeader(error.stack ?? '', MAX_STACK);
  headers[HEADER.dlAttempts] = String(facts.attempts);
  headers[HEADER.dlTopic] = facts.topic;
  headers[HEADER.dlGroup] = facts.group ?? '';
  headers[HEADER.dlFirstFailure] = first;
  headers[HEADER.dlLastFailure] = String(facts.now);
  return headers;
}

/**
 * A failure time from a dead letter's header, ms since the epoch, or 0 (unknown, as when absent): a foreign or
 * damaged value (`1e20`, `-1`, `NaN`) would otherwise be an Invalid Date, whose `toISOString()` throws in
 * every reader that logs it.
 */
function timeHeader(value: string | undefined): number {
  const ms = numericHeader(value, 0);
  return ms >= 0 && ms <= MAX_DATE_MS ? Math.trunc(ms) : 0;
}

/** A count from a dead letter's header: a non-negative safe integer, else 0 (unknown, as when absent). */
function countHeader(value: string | undefined): number {
  const n = numericHeader(value, 0);
  return Number.isSafeInteger(n) && n >= 0 ? n : 0;
}

/**
 * The failure metadata of a dead letter, or undefined for an ordinary message. Any producer can write these
 * headers, so every field is checked: out-of-range times and counts read as unknown (epoch 0, 0 attempts) and
 * texts are bounded as busbar writes them; nothing here throws.
 */
export function parseDeadLetter(headers: Readonly<Record<string, string>>): DeadLetterInfo | undefined {
  const topic = headers[HEADER.dlTopic];
  if (topic === undefined) return undefined;
  const dropped = headers[HEADER.dlDroppedHeaders];
  return {
    ...(dropped === undefined ? {} : { droppedHeaders: droppedNames(dropped) }),
    errorName: bounded(unescapeHeader(headers[HEADER.dlErrorName]), MAX_NAME),
    errorMessage: bounded(unescapeHeader(headers[HEADER.dlErrorMessage]), MAX_MESSAGE),
    errorStack: bounded(unescapeHeader(headers[HEADER.dlErrorStack]), MAX_STACK),
    attempts: countHeader(headers[HEADER.dlAttempts]),
    topic: bounded(topic, MAX_TOPIC),
    group: bounded(headers[HEADER.dlGroup] ?? '', MAX_NAME),
    firstFailureAt: new Date(timeHeader(headers[HEADER.dlFirstFailure])),
    lastFailureAt: new Date(timeHeader(headers[HEADER.dlLastFailure])),
  };
}

function droppedNames(value: string): string[] {
  try {
    const names: unknown = JSON.parse(value);
    if (Array.isArray(names)) {
      return names.filter((n): n is string => typeof n === 'string').map((n) => bounded(n, MAX_NAME));
    }
  } catch {
    // Not ours: no names.
  }
  return [];
}

/** An HTTP token: a header name every broker busbar supports can carry. */
const PORTABLE_NAME = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;
// biome-ignore lint/suspicious/noControlCharactersInRegex: these are the characters looked for
const CONTROL = /[\u0000-\u001f\u007f]/;

/**
 * The headers of a dead letter whose write the broker refused for its headers (a foreign message's header
 * name that this broker cannot carry, an empty one): the user headers that are not portable are left out and
 * named in `busbar-dl-dropped-headers`, so the dead letter is written instead of being refused for good.
 * Undefined when there is nothing to leave out.
 */
export function portableHeaders(headers: Readonly<Record<string, string>>): Record<string, string> | undefined {
  const kept: Record<string, string> = {};
  const dropped: string[] = [];
  for (const name of Object.keys(headers)) {
    const value = headers[name] as string;
    if (name.startsWith(RESERVED_HEADER_PREFIX) || (PORTABLE_NAME.test(name) && !CONTROL.test(value))) {
      Object.defineProperty(kept, name, { value, enumerable: true, writable: true, configurable: true });
    } else dropped.push(name.toWellFormed());
  }
  if (dropped.length === 0) return undefined;
  // A JSON array in ASCII: any name survives it, and every broker carries the value.
  kept[HEADER.dlDroppedHeaders] = JSON.stringify(dropped).replace(
    /[\u007f-\uffff]/g,
    (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`,
  );
  return kept;
}

/**
 * Headers for a re-driven message: the user's own, every busbar header dropped (failure metadata, attempts,
 * broker positions: the driver writes what the new message needs), and the re-drive counter bumped.
 */
export function redriveHeaders(dead: Readonly<Record<string, string>>): Record<string, string> {
  const headers: Record<string, string> = {};
  for (const [name, value] of Object.entries(dead)) {
    if (!name.startsWith(RESERVED_HEADER_PREFIX) || name === HEADER.keyBytes) headers[name] = value;
  }
  headers[HEADER.redrive] = String(numericHeader(dead[HEADER.redrive], 0) + 1);
  return headers;
}

/** Bytes a record takes against a broker's limit: body, key and header names and values, in UTF-8. */
export function recordBytes(record: Pick<OutgoingRecord, 'body' | 'key' | 'headers'>): number {
  let size = record.body.byteLength + (record.key === undefined ? 0 : Buffer.byteLength(record.key));
  for (const name in record.headers) size += name.length + Buffer.byteLength(record.headers[name] as string);
  return size;
}

/**
 * A dead letter is its message plus up to a few KB of failure metadata, so a message near the broker's limit
 * can make a dead letter the broker refuses. Trim the metadata (stack first, then the message) to fit rather
 * than fail: the original body, key and headers are what the dead letter is for.
 */
export function fitDeadLetter(record: OutgoingRecord, limit: number): OutgoingRecord {
  if (!Number.isFinite(limit) || recordBytes(record) <= limit) return record;
  const headers: Record<string, string> = { ...record.headers, [HEADER.dlErrorStack]: '' };
  const trimmed = { ...record, headers };
  if (recordBytes(trimmed) <= limit) return trimmed;
  headers[HEADER.dlErrorMessage] = escapeHeader(unescapeHeader(headers[HEADER.dlErrorMessage]), 100);
  return trimmed;
}
