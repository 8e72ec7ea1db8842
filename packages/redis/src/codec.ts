import { isUtf8 } from 'node:buffer';
import {
  addWireHeader,
  attemptFromHeaders,
  type Delivery,
  keepsOwnTimestamp,
  numericHeader,
  type OutgoingRecord,
} from '@busbar/core/transport';

/**
 * Stream entry layout: `body` (raw bytes), `id` (busbar id), `ts` (publish
 * time, ms; only when older than the entry id says), `key` (only when set), `h` (headers as a JSON object, only when
 * there are any), `ct` (content type, only when it is not `application/json`: an entry with busbar's `id` field
 * and no `ct` is JSON). A retry-stream entry has a single field `r`: the JSON
 * {@link RetryPayload} that the retry scripts move around without parsing.
 */
const EMPTY_HEADERS: Readonly<Record<string, string>> = Object.freeze({});

/** busbar's default content type: left out of entries and retry payloads, as the most common one. */
const JSON_TYPE = 'application/json';

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
  /** Content type, only when not JSON; '' when the message had none. */
  readonly c?: string;
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
  if (record.contentType !== JSON_TYPE && record.contentType !== '') args.push('ct', record.contentType);
}

export interface DecodedEntry {
  id: string;
  key: string | undefined;
  headers: Readonly<Record<string, string>>;
  body: Uint8Array;
  timestamp: number;
  /** Attempt of the first delivery of this entry (from `busbar-attempt` or the retry payload). */
  baseAttempt: number;
  /** The content type, undefined when the entry says nothing about it. */
  contentType: string | undefined;
}

/**
 * Decodes the fields of a stream entry read with a Buffer reply. Entries from other producers are taken as
 * they come: an unusable `id` (empty, over 1 KB, control characters) falls back to the entry id, a `ts`
 * that is no valid time to the entry id's time, headers that are not a JSON object are dropped, and a
 * malformed retry payload `r` is ignored (the entry is read like any other). Never throws.
 */
export function decodeEntry(entryId: string, fields: Buffer[]): DecodedEntry {
  let body: Buffer | undefined;
  let id: string | undefined;
  let key: string | undefined;
  let ts = 0;
  let headers = EMPTY_HEADERS;
  let contentType: string | undefined;
  let busbarId = false;
  const entryTime = Number(entryId.slice(0, entryId.indexOf('-')));
  for (let i = 0; i + 1 < fields.length; i += 2) {
    const name = fields[i] as Buffer;
    const value = fields[i + 1] as Buffer;
    // Field names compared as bytes: a string per name per entry was a measurable part of consume.
    switch (fieldOf(name)) {
      case 'body':
        body = value;
        break;
      case 'id':
        id = usableId(value.toString());
        busbarId = true;
        break;
      case 'ct':
        contentType = value.toString();
        break;
      case 'ts':
        ts = validTime(numericHeader(value.toString(), 0), 0);
        break;
      case 'key':
        key = value.toString();
        break;
      case 'h':
        headers = parseHeaders(value.toString());
        break;
      case 'r': {
        const retried = fromRetryPayload(value.toString(), entryId, entryTime);
        if (retried) return retried;
        break;
      }
    }
  }
  // For an entry that busbar did not write, the id and timestamp come from the entry id.
  return {
    id: id ?? entryId,
    key,
    headers,
    body: body ?? new Uint8Array(0),
    timestamp: ts || entryTime,
    baseAttempt: headers === EMPTY_HEADERS ? 1 : attemptFromHeaders(headers),
    contentType: contentType ?? (busbarId ? JSON_TYPE : undefined),
  };
}

type Field = 'body' | 'id' | 'ts' | 'ct' | 'key' | 'h' | 'r' | undefined;

function fieldOf(name: Buffer): Field {
  switch (name.length) {
    case 1:
      return name[0] === 0x68 ? 'h' : name[0] === 0x72 ? 'r' : undefined;
    case 2:
      if (name[0] === 0x69 && name[1] === 0x64) return 'id';
      if (name[0] === 0x63 && name[1] === 0x74) return 'ct';
      return name[0] === 0x74 && name[1] === 0x73 ? 'ts' : undefined;
    case 3:
      return name[0] === 0x6b && name[1] === 0x65 && name[2] === 0x79 ? 'key' : undefined;
    case 4:
      return name[0] === 0x62 && name[1] === 0x6f && name[2] === 0x64 && name[3] === 0x79 ? 'body' : undefined;
    default:
      return undefined;
  }
}

/** The largest time a JavaScript Date holds (ms); beyond it `new Date()` is Invalid Date. */
const MAX_TIME = 8.64e15;

/** `value` if it is a usable publish time (ms since the epoch), else `fallback`. */
function validTime(value: number, fallback: number): number {
  return Number.isFinite(value) && value > 0 && value <= MAX_TIME ? value : fallback;
}

/** A message id from another producer, or undefined when it is empty, over 1 KB or has control characters. */
export function usableId(text: string): string | undefined {
  if (text === '' || text.length > 1_024 || Buffer.byteLength(text) > 1_024) return undefined;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c < 0x20 || (c >= 0x7f && c <= 0x9f)) return undefined;
  }
  return text;
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** Headers from the `h` field: a JSON object, each value through core's wire-header rule. */
function parseHeaders(text: string): Readonly<Record<string, string>> {
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    return EMPTY_HEADERS;
  }
  return isRecord(parsed) ? wireHeaders(parsed) : EMPTY_HEADERS;
}

function wireHeaders(source: Record<string, unknown>): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [name, value] of Object.entries(source)) addWireHeader(out, name, value);
  return out;
}

/** A retry payload as busbar writes it, or undefined for anything else (another producer's `r` field). */
function fromRetryPayload(text: string, entryId: string, entryTime: number): DecodedEntry | undefined {
  let p: unknown;
  try {
    p = JSON.parse(text);
  } catch {
    return undefined;
  }
  if (!isRecord(p) || typeof p.b !== 'string' || !isRecord(p.h)) return undefined;
  const attempt = typeof p.a === 'number' && Number.isSafeInteger(p.a) && p.a >= 1 ? p.a : 1;
  return {
    id: (typeof p.i === 'string' ? usableId(p.i) : undefined) ?? entryId,
    key: typeof p.k === 'string' ? p.k : undefined,
    headers: wireHeaders(p.h),
    body: Buffer.from(p.b, 'base64'),
    timestamp: validTime(typeof p.t === 'number' ? p.t : 0, entryTime),
    baseAttempt: attempt,
    contentType: typeof p.c !== 'string' ? JSON_TYPE : p.c === '' ? undefined : p.c,
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
    ...(d.contentType === JSON_TYPE ? {} : { c: d.contentType ?? '' }),
  };
  return JSON.stringify(payload);
}
