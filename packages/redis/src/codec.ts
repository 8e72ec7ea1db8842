import { isUtf8 } from 'node:buffer';
import { attemptFromHeaders, type Delivery, HEADER, type OutgoingRecord } from '@busbar/core/transport';

/**
 * Stream entry layout: `body` (raw bytes), `id` (busbar id), `ts` (publish
 * time, ms), `key` (only when set), `h` (headers as a JSON object, only when
 * there are any). A retry-stream entry has a single field `r`: the JSON
 * {@link RetryPayload} that the retry scripts move around without parsing.
 */
const EMPTY_HEADERS: Readonly<Record<string, string>> = Object.freeze({});

/**
 * The Redis entry id a delivery was read from (for a retry, the entry it was
 * first read from). Core copies it into a dead letter, which so keeps the
 * original entry id.
 */
export const ENTRY_HEADER = 'busbar-redis-entry';

/** Content types whose bodies are UTF-8 text (JSON, text/*). */
const TEXT = /^(application\/(.+\+)?json|text\/)/i;

/** The native record a Redis delivery exposes as `message.raw`. */
export interface RedisEntry {
  /** The stream key the entry was read from (the topic stream or the group's retry stream). */
  readonly stream: string;
  /** The Redis stream entry id. */
  readonly entryId: string;
  /** How often Redis handed this entry to a group member (1 for broadcast reads). */
  readonly deliveryCount: number;
}

/** What a retry carries through the retry set and retry stream. */
export interface RetryPayload {
  /** busbar id, key, publish time, headers, attempt, body (base64), source entry id. */
  readonly i: string;
  readonly k?: string;
  readonly t: number;
  readonly h: Record<string, string>;
  readonly a: number;
  readonly b: string;
  readonly s: string;
}

/** XADD arguments after the key and trimming options. */
export function entryFields(record: OutgoingRecord): (string | Buffer)[] {
  const bytes = Buffer.from(record.body.buffer, record.body.byteOffset, record.body.byteLength);
  // A Buffer argument switches ioredis to building the whole command from Buffers (several times slower);
  // bodies that are valid UTF-8 text by their content type go as a string, which Redis stores as the same bytes.
  const body = TEXT.test(record.contentType) && isUtf8(bytes) ? bytes.toString('utf8') : bytes;
  const fields: (string | Buffer)[] = ['body', body, 'id', record.id, 'ts', String(record.timestamp)];
  if (record.key !== undefined) fields.push('key', record.key);
  for (const _ in record.headers) {
    fields.push('h', JSON.stringify(record.headers));
    break;
  }
  return fields;
}

export interface DecodedEntry {
  id: string;
  key: string | undefined;
  headers: Readonly<Record<string, string>>;
  body: Uint8Array;
  timestamp: number;
  /** Attempt of the first delivery of this entry (from `busbar-attempt` or the retry payload). */
  baseAttempt: number;
}

/** Decodes the fields of a stream entry read with a Buffer reply (throws on a malformed retry payload). */
export function decodeEntry(entryId: string, fields: Buffer[]): DecodedEntry {
  let body: Buffer | undefined;
  let id: string | undefined;
  let key: string | undefined;
  let ts = 0;
  let headers = EMPTY_HEADERS;
  for (let i = 0; i + 1 < fields.length; i += 2) {
    const name = (fields[i] as Buffer).toString('latin1');
    const value = fields[i + 1] as Buffer;
    if (name === 'body') body = value;
    else if (name === 'id') id = value.toString();
    else if (name === 'ts') ts = Number(value.toString('latin1'));
    else if (name === 'key') key = value.toString();
    else if (name === 'h') headers = parseHeaders(value.toString());
    else if (name === 'r') return fromRetryPayload(JSON.parse(value.toString()) as RetryPayload);
  }
  // A dead letter keeps the entry id it had on its original topic; every other entry reports its own.
  const keep = headers[HEADER.dlTopic] !== undefined && headers[ENTRY_HEADER] !== undefined;
  // For an entry that busbar did not write, the id and timestamp come from the entry id.
  return {
    id: id ?? entryId,
    key,
    headers: keep ? headers : { ...headers, [ENTRY_HEADER]: entryId },
    body: body ?? new Uint8Array(0),
    timestamp: ts || Number(entryId.slice(0, entryId.indexOf('-'))),
    baseAttempt: headers === EMPTY_HEADERS ? 1 : attemptFromHeaders(headers),
  };
}

function parseHeaders(text: string): Readonly<Record<string, string>> {
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    return EMPTY_HEADERS;
  }
  if (typeof parsed !== 'object' || parsed === null) return EMPTY_HEADERS;
  const out: Record<string, string> = {};
  for (const [name, value] of Object.entries(parsed)) if (typeof value === 'string') out[name] = value;
  return out;
}

function fromRetryPayload(p: RetryPayload): DecodedEntry {
  return {
    id: p.i,
    key: p.k,
    headers: p.h,
    body: Buffer.from(p.b, 'base64'),
    timestamp: p.t,
    baseAttempt: p.a,
  };
}

/** The retry payload for a delivery being retried. */
export function retryPayload(
  d: Delivery,
  entryId: string,
  attempt: number,
  headers: Readonly<Record<string, string>>,
): string {
  const payload: RetryPayload = {
    i: d.id,
    ...(d.key === undefined ? {} : { k: d.key }),
    t: d.timestamp,
    h: headers as Record<string, string>,
    a: attempt,
    b: Buffer.from(d.body.buffer, d.body.byteOffset, d.body.byteLength).toString('base64'),
    s: entryId,
  };
  return JSON.stringify(payload);
}
