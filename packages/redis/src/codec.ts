import { isUtf8 } from 'node:buffer';
import {
  addWireHeader,
  attemptFromHeaders,
  type Delivery,
  keepsOwnTimestamp,
  numericHeader,
  type OutgoingRecord,
  usableId,
} from '@busbar/core/transport';
import { CONTENT_TYPE_FIELD, fieldOf, fieldText, headerField, headerName, objectBody } from './fields.js';

/**
 * Stream entry layout busbar writes: `body` (raw bytes), `id` (busbar id), `content-type`, `ts` (publish time,
 * ms; only when older than the entry id says), `key` (only when set), one field per header: `h:<name>`, and
 * CloudEvents attributes bare as `ce-<attr>`. How every field name is read (foreign producers' too) is in
 * fields.ts. A retry-stream entry has a single field `r`: the JSON {@link RetryPayload} that the retry
 * scripts move around without parsing.
 */
const EMPTY_HEADERS: Readonly<Record<string, string>> = Object.freeze({});

/** busbar's default content type: left out of retry payloads, as the most common one. */
const JSON_TYPE = 'application/json';
const JSON_BYTES = Buffer.from(JSON_TYPE);

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
 * ms, and every field is one more argument ioredis encodes per message (bench finding). Headers go one field
 * each, so a consumer without busbar reads them by name instead of parsing a JSON blob.
 */
/**
 * A body as an XADD argument. A Buffer argument switches ioredis to building the whole command from Buffers
 * (measured 20-40% more CPU per XADD); a body that is valid UTF-8 (any JSON or text, and many binary ones) goes
 * as a string instead, which ioredis encodes back to exactly the same bytes. No copy either way.
 */
export function bodyArgument(body: Uint8Array): string | Buffer {
  const bytes = Buffer.from(body.buffer, body.byteOffset, body.byteLength);
  return isUtf8(bytes) ? bytes.toString('utf8') : bytes;
}

export function pushEntryFields(args: (string | Buffer | number)[], record: OutgoingRecord, now: number): void {
  args.push('body', bodyArgument(record.body), 'id', record.id);
  if (record.contentType !== '') args.push(CONTENT_TYPE_FIELD, record.contentType);
  if (keepsOwnTimestamp(record, now)) args.push('ts', String(record.timestamp));
  if (record.key !== undefined) args.push('key', record.key);
  for (const name in record.headers) args.push(headerField(name), record.headers[name] as string);
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
 * Decodes the fields of a stream entry read with a Buffer reply (field names: see fields.ts). Entries from
 * other producers are taken as they come: an unusable `id` (empty, over 1 KB, control characters) falls back
 * to the entry id, a `ts` that is no valid time to the entry id's time, an `h` that is not a JSON object is
 * dropped, and an `r` that is not a retry payload is data. The body is the `body` field, else the only data
 * field when it is named `data`, `payload`, `message` or `value`, else a JSON object of the data fields.
 * Never throws.
 */
export function decodeEntry(entryId: string, fields: Buffer[]): DecodedEntry {
  let body: Buffer | undefined;
  let alias: Buffer | undefined;
  let dataFields = 0;
  let id: string | undefined;
  let hasId = false;
  let key: string | undefined;
  let ts = 0;
  let headers: Record<string, string> | undefined;
  let contentType: string | undefined;
  const entryTime = Number(entryId.slice(0, entryId.indexOf('-')));
  for (let i = 0; i + 1 < fields.length; i += 2) {
    const name = fields[i] as Buffer;
    const value = fields[i + 1] as Buffer;
    switch (fieldOf(name)) {
      case 'body':
        body = value;
        break;
      case 'id': {
        const text = value.toString();
        hasId = true;
        if (usableId(text)) id = text;
        break;
      }
      case 'ct':
        // The common value as the shared constant: no string per entry.
        contentType = value.equals(JSON_BYTES) ? JSON_TYPE : value.toString();
        break;
      case 'ts':
        ts = validTime(numericHeader(value.toString(), 0), 0);
        break;
      case 'key':
        key = value.toString();
        break;
      case 'header':
        headers ??= {};
        addWireHeader(headers, headerName(name), fieldText(value));
        break;
      case 'h':
        headers ??= {};
        addJsonHeaders(headers, value.toString());
        break;
      case 'r': {
        const retried = fromRetryPayload(value.toString(), entryId, entryTime);
        if (retried) return retried;
        dataFields++;
        break;
      }
      case 'alias':
        alias = value;
        dataFields++;
        break;
      default:
        dataFields++;
    }
  }
  if (body === undefined && dataFields > 0) {
    if (dataFields === 1 && alias !== undefined) body = alias;
    else {
      body = objectBody(fields);
      contentType = JSON_TYPE;
    }
  } else if (contentType === undefined && hasId && body !== undefined && parsesAsJson(body)) {
    // busbar's format before the content-type field: an entry with `id` was JSON.
    contentType = JSON_TYPE;
  }
  // For an entry that busbar did not write, the id and timestamp come from the entry id.
  const finalHeaders = headers ?? EMPTY_HEADERS;
  return {
    id: id ?? entryId,
    key,
    headers: finalHeaders,
    body: body ?? new Uint8Array(0),
    timestamp: ts || entryTime,
    baseAttempt: headers === undefined ? 1 : attemptFromHeaders(finalHeaders),
    contentType,
  };
}

const strictUtf8 = new TextDecoder('utf-8', { fatal: true });

function parsesAsJson(body: Buffer): boolean {
  try {
    JSON.parse(strictUtf8.decode(body));
    return true;
  } catch {
    return false;
  }
}

/** The largest time a JavaScript Date holds (ms); beyond it `new Date()` is Invalid Date. */
const MAX_TIME = 8.64e15;

/** `value` if it is a usable publish time (ms since the epoch), else `fallback`. */
function validTime(value: number, fallback: number): number {
  return Number.isFinite(value) && value > 0 && value <= MAX_TIME ? value : fallback;
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** Adds the headers of an `h` field (a JSON object), each value through core's wire-header rule. */
function addJsonHeaders(headers: Record<string, string>, text: string): void {
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    return;
  }
  if (isRecord(parsed)) for (const [name, value] of Object.entries(parsed)) addWireHeader(headers, name, value);
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
    // The source entry id when the busbar id is unusable: stable across retries, unlike the retry entry's own.
    id: usableId(p.i) ? p.i : usableId(p.s) ? p.s : entryId,
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
