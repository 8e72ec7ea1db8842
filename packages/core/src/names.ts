import { InvalidHeaderError, InvalidTopicError } from './errors.js';
import { toFailure } from './thrown.js';

/**
 * Portable names. A topic valid here is valid on every broker busbar supports,
 * which is what lets a service switch brokers by changing its URL: segments of
 * `[A-Za-z0-9_-]` joined by `.`, at most 249 characters (Kafka's limit).
 * Subscriptions may use `*` for exactly one segment and a final `#` for zero or
 * more. Drivers add their own checks on top (e.g. RabbitMQ's `amq.` prefix).
 */
const SEGMENT = /^[A-Za-z0-9_-]+$/;
export const MAX_TOPIC_LENGTH = 249;

export function assertTopicName(name: unknown, use: 'publish' | 'subscribe'): asserts name is string {
  if (typeof name !== 'string' || name.length === 0) {
    throw new InvalidTopicError('Topic name must be a non-empty string');
  }
  if (name.length > MAX_TOPIC_LENGTH) {
    throw new InvalidTopicError(`Topic name is ${name.length} characters, over the limit of ${MAX_TOPIC_LENGTH}`);
  }
  const segments = name.split('.');
  for (let i = 0; i < segments.length; i++) {
    const segment = segments[i] as string;
    if (use === 'subscribe' && (segment === '*' || (segment === '#' && i === segments.length - 1))) continue;
    if (!SEGMENT.test(segment)) {
      const why =
        segment === ''
          ? 'has an empty segment'
          : segment === '*' || segment === '#'
            ? use === 'publish'
              ? 'has a wildcard, which only subscriptions may use'
              : "has '#' before the last segment"
            : `has '${segment}', but segments may only hold letters, digits, '_' and '-'`;
      throw new InvalidTopicError(`Topic '${printable(name)}' ${why}`);
    }
  }
}

export function isPattern(topic: string): boolean {
  return topic.includes('*') || topic.includes('#');
}

/** True when `topic` matches the subscription `pattern` (`*` one segment, trailing `#` any number). */
export function topicMatches(pattern: string, topic: string): boolean {
  if (!isPattern(pattern)) return pattern === topic;
  const p = pattern.split('.');
  const t = topic.split('.');
  for (let i = 0; i < p.length; i++) {
    if (p[i] === '#') return true;
    if (i >= t.length) return false;
    if (p[i] !== '*' && p[i] !== t[i]) return false;
  }
  return p.length === t.length;
}

const GROUP = /^[A-Za-z0-9_-]{1,100}$/;

/** Groups name queues, consumer groups and durable consumers: letters, digits, `_` and `-`, at most 100. */
export function assertGroupName(group: unknown): asserts group is string {
  if (typeof group !== 'string' || !GROUP.test(group)) {
    throw new InvalidTopicError(
      `Group '${printable(String(group))}' is invalid: use 1-100 letters, digits, '_' or '-'`,
    );
  }
}

/** Headers whose names start with this are busbar's own; users cannot set them. */
export const RESERVED_HEADER_PREFIX = 'busbar-';
const HEADER_NAME = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$/;
const FORBIDDEN_KEYS = new Set(['__proto__', 'constructor', 'prototype']);

/**
 * Copies user headers into a fresh plain record after checking
 * them: own string keys only, token-like names, no busbar- prefix, string values.
 */
export function checkHeaders(headers: unknown): Record<string, string> {
  if (headers === undefined) return {};
  try {
    // A Map or a fetch `Headers` has no own keys: its headers were dropped without a word. A record of headers
    // is not iterable; those (and arrays) are.
    if (typeof headers !== 'object' || headers === null || isIterable(headers)) {
      throw new InvalidHeaderError(
        'Headers must be an object of string values (a plain one: not a Map, Headers or array)',
      );
    }
    return copyHeaders(headers);
  } catch (error) {
    if (error instanceof InvalidHeaderError) throw error;
    // A getter or Proxy trap that throws: the caller's bug, reported as what it is (publish rejected with the raw
    // TypeError).
    throw new InvalidHeaderError(`Headers could not be read: ${printable(toFailure(error).message)}`);
  }
}

/** Reading the iterator may throw (a Proxy): the caller reports that too. */
export function isIterable(value: object): boolean {
  return typeof (value as { [Symbol.iterator]?: unknown })[Symbol.iterator] === 'function';
}

function copyHeaders(headers: object): Record<string, string> {
  const out: Record<string, string> = {};
  for (const name of Object.keys(headers)) {
    if (FORBIDDEN_KEYS.has(name)) throw new InvalidHeaderError(`Header name '${name}' is not allowed`);
    if (!HEADER_NAME.test(name)) {
      throw new InvalidHeaderError(
        `Header name '${printable(name)}' is invalid: use letters, digits, '_', '.' or '-' (at most 128)`,
      );
    }
    if (name.toLowerCase().startsWith(RESERVED_HEADER_PREFIX)) {
      throw new InvalidHeaderError(
        `Header name '${name}' is reserved: the '${RESERVED_HEADER_PREFIX}' prefix is busbar's`,
      );
    }
    const value = (headers as Record<string, unknown>)[name];
    if (typeof value !== 'string') {
      throw new InvalidHeaderError(`Header '${name}' must be a string, got ${value === null ? 'null' : typeof value}`);
    }
    checkHeaderValue(name, value);
    out[name] = value;
  }
  checkHeadersSize(out);
  if (Object.getOwnPropertySymbols(headers).length > 0) {
    throw new InvalidHeaderError('Header names must be strings, not symbols');
  }
  return out;
}

/**
 * The most user headers (names and values, UTF-8 bytes) every broker carries with room to spare: NATS
 * JetStream refuses a header block over 64 KiB, and a dead letter adds busbar's own headers and up to ~12 KB
 * of failure metadata to the user's; RabbitMQ carries headers in one frame and an MQTT 5 string holds 65,535
 * bytes. 40 KiB of headers is far beyond what trace ids and tenants need.
 */
export const MAX_HEADERS_BYTES = 40_960;

// Every C0 control (tab too), DEL, C1 and the BMP non-characters: NATS headers are text lines that CR/LF end, MQTT 5 says strings
// should not hold them and Mosquitto drops the connection of a client that sends one.
// biome-ignore lint/suspicious/noControlCharactersInRegex: these are the characters being rejected
const CONTROL = /[\u0000-\u001f\u007f-\u009f\ufdd0-\ufdef\ufffe\uffff]/;

/** A header value that travels unchanged on every broker, or an InvalidHeaderError saying why not. */
function checkHeaderValue(name: string, value: string): void {
  const bad = CONTROL.exec(value);
  if (bad) {
    const code = (bad[0].codePointAt(0) as number).toString(16).toUpperCase().padStart(4, '0');
    throw new InvalidHeaderError(
      `Header '${name}' contains U+${code} (a control character or non-character), which brokers reject`,
    );
  }
  if (!value.isWellFormed()) {
    throw new InvalidHeaderError(`Header '${name}' contains a lone surrogate, which is not valid UTF-8`);
  }
}

/** Headers within {@link MAX_HEADERS_BYTES}, or an InvalidHeaderError. */
export function checkHeadersSize(headers: Readonly<Record<string, string>>): void {
  let units = 0;
  for (const name in headers) units += name.length + (headers[name] as string).length;
  // Cheap bound first: a UTF-16 code unit is at most 3 UTF-8 bytes.
  if (units * 3 <= MAX_HEADERS_BYTES) return;
  let bytes = 0;
  for (const name in headers) bytes += name.length + Buffer.byteLength(headers[name] as string);
  if (bytes > MAX_HEADERS_BYTES) {
    throw new InvalidHeaderError(
      `Headers are ${bytes} bytes, over the portable limit of ${MAX_HEADERS_BYTES} (names and values, UTF-8)`,
    );
  }
}

function printable(text: string): string {
  const shown = text.length > 60 ? `${text.slice(0, 57)}...` : text;
  // biome-ignore lint/suspicious/noControlCharactersInRegex: showing control characters is the point
  return shown.replace(/[\u0000-\u001f\u007f]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
}
