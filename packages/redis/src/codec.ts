import { isUtf8 } from 'node:buffer';
import { attemptFromHeaders, type Delivery, keepsOwnTimestamp, type OutgoingRecord } from '@busbar/core/transport';

/**
 * Stream entry layout: `body` (raw bytes), `id` (busbar id), `ts` (publish
 * time, ms; only when older than the entry id says), `key` (only when set), `h` (headers as a JSON object, only when
 * there are any). A retry-stream entry has a single field `r`: the JSON
 * {@link RetryPayload} that the retry scripts move around without parsing.
 */
const EMPTY_HEADERS: Readonly<Record<string, string>> = Object.freeze({});

/**
 * The Redis entry id a message was first read from: written by core into its
 * retries and its dead letter (see RedisDelivery.deadLetterHeaders).
 */
export const ENTRY_HEADER = 'busbar-redis-entry';

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

/**
 * XADD arguments after the key and trimming options, appended to `args`. `ts` is written only for a record
 * older than a second (a dead letter, a re-drive, an outbox row): a fresh entry's id is its publish time in
 * ms, and every field is one more argument ioredis encodes per message (bench finding).
 */
export function pushEntryFields(args: (string | Buffer | number)[], record: OutgoingRecord, now: number): void {
  const bytes = Buffer.from(record.body.buffer, record.body.byteOffset, record.body.byteLength);
  // A Buffer argument switches ioredis to building the whole command from Buffers (measured 20-40% more CPU
  // per XADD); a body that is valid UTF-8 (any JSON or text, and many binary ones) goes as a string instead,
  // which ioredis encodes back to exactly the same bytes.
  const body = isUtf8(bytes) ? bytes.toString('utf8') : bytes;
  args.push('body', body, 'id', record.id);
  if (keepsOwnTimestamp(record, now)) args.push('ts', String(record.timestamp));
  if (record.key !== undefined) args.push('key', record.key);
  for (const _ in record.headers) {
    args.push('h', JSON.stringify(record.headers));
    break;
  }
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
    const name = fields[i] as Buffer;
    const value = fields[i + 1] as Buffer;
    // Field names compared as bytes: a string per name per entry was a measurable part of consume.
    switch (fieldOf(name)) {
      case 'body':
        body = value;
        break;
      case 'id':
        id = value.toString();
        break;
      case 'ts':
        ts = digits(value);
        break;
      case 'key':
        key = value.toString();
        break;
      case 'h':
        headers = parseHeaders(value.toString());
        break;
      case 'r':
        return fromRetryPayload(JSON.parse(value.toString()) as RetryPayload);
    }
  }
  // For an entry that busbar did not write, the id and timestamp come from the entry id.
  return {
    id: id ?? entryId,
    key,
    headers,
    body: body ?? new Uint8Array(0),
    timestamp: ts || Number(entryId.slice(0, entryId.indexOf('-'))),
    baseAttempt: headers === EMPTY_HEADERS ? 1 : attemptFromHeaders(headers),
  };
}

type Field = 'body' | 'id' | 'ts' | 'key' | 'h' | 'r' | undefined;

function fieldOf(name: Buffer): Field {
  switch (name.length) {
    case 1:
      return name[0] === 0x68 ? 'h' : name[0] === 0x72 ? 'r' : undefined;
    case 2:
      if (name[0] === 0x69 && name[1] === 0x64) return 'id';
      return name[0] === 0x74 && name[1] === 0x73 ? 'ts' : undefined;
    case 3:
      return name[0] === 0x6b && name[1] === 0x65 && name[2] === 0x79 ? 'key' : undefined;
    case 4:
      return name[0] === 0x62 && name[1] === 0x6f && name[2] === 0x64 && name[3] === 0x79 ? 'body' : undefined;
    default:
      return undefined;
  }
}

/** A non-negative decimal integer (the publish time in ms); NaN-free: anything else reads as 0. */
function digits(value: Buffer): number {
  let n = 0;
  for (let i = 0; i < value.length; i++) {
    const c = (value[i] as number) - 0x30;
    if (c < 0 || c > 9) return 0;
    n = n * 10 + c;
  }
  return n;
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
