import { InvalidHeaderError } from '@busbar/core';
import {
  addWireHeader,
  HEADER,
  usableId as isUsableId,
  keepsOwnTimestamp,
  numericHeader,
  type OutgoingRecord,
  RESERVED_HEADER_PREFIX,
} from '@busbar/core/transport';
import type { JsMsg, Msg, MsgHdrs } from 'nats';
import {
  CE_DATA_CONTENT_TYPE,
  carriesCloudEvent,
  isCeHeader,
  isDataContentType,
  percentEncode,
  readCloudEvent,
} from './cloudevents.js';
import { ackSubject, encodedHeaders, headerBlock, msgHeaderBlock } from './internals.js';

/** The JetStream dedup header; busbar sets it on every message. */
export const MSG_ID = 'Nats-Msg-Id';

/**
 * The `Nats-Msg-Id` of a record. The server dedupes ids per stream, and one
 * stream holds a topic, its dead-letter topics and its siblings, so the id is
 * scoped by topic (`<topic>:<id>`); a re-driven copy carries its redrive count
 * (`:r<n>`) so it is not dropped as a duplicate of the original.
 */
export function dedupId(topic: string, id: string, headers: Readonly<Record<string, string>>): string {
  const redrive = headers[HEADER.redrive];
  return redrive === undefined ? `${topic}:${id}` : `${topic}:${id}:r${redrive}`;
}

/** The busbar id back from a `Nats-Msg-Id`; a foreign id (not ours) is kept whole. */
export function idFrom(msgId: string, topic: string, redrive: string | undefined): string {
  const prefix = `${topic}:`;
  if (!msgId.startsWith(prefix)) return msgId;
  const suffix = redrive === undefined ? '' : `:r${redrive}`;
  return suffix && msgId.endsWith(suffix) ? msgId.slice(prefix.length, -suffix.length) : msgId.slice(prefix.length);
}

/**
 * The header that carried a dead letter's `<stream>:<sequence>` before core's `HEADER.sourceOffset`; retry
 * copies written before the rename still carry it (see `fromRetryCopy`).
 */
export const LEGACY_SOURCE_OFFSET = `${RESERVED_HEADER_PREFIX}dl-seq`;

export interface NativeRecord {
  readonly subject: string;
  readonly headers: MsgHdrs;
  readonly data: Uint8Array;
  /** headers + data, as the server counts it against `max_payload`. */
  readonly size: number;
  /** The header block alone (JetStream refuses one over {@link MAX_HEADER_BYTES}). */
  readonly headerSize: number;
}

/**
 * Checks header names/values against NATS' header rules; throws before anything is sent. Names are MIME
 * tokens (printable ASCII without ':'); a value cannot hold CR or LF, which would end the header line on
 * the wire and let the rest be read as protocol. (Core rejects other control characters in user headers;
 * a NUL the server delivered in a foreign header is carried on into its dead letter.) Dead letters and re-drives carry headers read from the wire, so core's own
 * checks of user headers are not enough here.
 */
export function checkNatsHeaders(headers: Readonly<Record<string, string>>): void {
  for (const name in headers) {
    const value = headers[name] as string;
    if (!HEADER_NAME.test(name)) {
      throw new InvalidHeaderError(
        `Header name '${printable(name)}' cannot be carried by NATS (printable ASCII without ':' only)`,
      );
    }
    if (BAD_VALUE.test(value)) {
      throw new InvalidHeaderError(`Header '${name}' contains CR or LF, which NATS headers cannot carry`);
    }
    if ((name.charCodeAt(0) | 0x20) === 0x6e && name.slice(0, 5).toLowerCase() === 'nats-') {
      throw new InvalidHeaderError(`Header name '${name}' is reserved: the 'Nats-' prefix is the server's`);
    }
    if (isContentType(name) || (isDataContentType(name) && carriesCloudEvent(headers))) {
      throw new InvalidHeaderError(
        `Header name '${name}' is reserved on NATS: it carries the codec's content type (message.contentType)`,
      );
    }
  }
}

const HEADER_NAME = /^[!-9;-~]+$/;
const BAD_VALUE = /[\r\n]/;

function printable(text: string): string {
  const shown = text.length > 60 ? `${text.slice(0, 57)}...` : text;
  // biome-ignore lint/suspicious/noControlCharactersInRegex: showing control characters is the point
  return shown.replace(/[\u0000-\u001f\u007f]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
}

/** UTF-8 bytes of a header text (names and values are mostly ASCII: skip the count then). */
function bytes(text: string): number {
  return ASCII.test(text) ? text.length : Buffer.byteLength(text);
}
// biome-ignore lint/suspicious/noControlCharactersInRegex: the ASCII range is the point
const ASCII = /^[\u0000-\u007f]*$/;

export function encode(record: OutgoingRecord, now: number): NativeRecord {
  // The block as nats.js would write it (`NATS/1.0`, one `Name: value` line per header, values trimmed, an empty
  // line), built as one string: see `encodedHeaders`. Values busbar adds are checked here; user headers were
  // checked by checkNatsHeaders.
  let block = `NATS/1.0\r\n${MSG_ID}: ${value(dedupId(record.topic, record.id, record.headers))}\r\n`;
  const cloudEvent = carriesCloudEvent(record.headers);
  const key = record.key;
  const ownTime = keepsOwnTimestamp(record, now);
  for (const name in record.headers) {
    // Read back from the wire (a dead letter, a re-drive), busbar's own lines are written once, below.
    if ((name === HEADER.key && key !== undefined) || (name === HEADER.timestamp && ownTime)) continue;
    let text = record.headers[name] as string;
    if (cloudEvent && isCeHeader(name)) {
      if (isDataContentType(name)) continue; // the record's content type, below
      text = percentEncode(text);
    }
    block += `${name}: ${text.trim()}\r\n`;
  }
  if (key !== undefined) block += `${HEADER.key}: ${value(key)}\r\n`;
  if (record.contentType) {
    block += `${CONTENT_TYPE}: ${value(record.contentType)}\r\n`;
    // The binding carries datacontenttype as a ce- header; Content-Type stays for every other reader.
    if (cloudEvent) block += `${CE_DATA_CONTENT_TYPE}: ${percentEncode(record.contentType)}\r\n`;
  }
  if (ownTime) block += `${HEADER.timestamp}: ${record.timestamp}\r\n`;
  block += '\r\n';
  // In UTF-8 bytes, as the server counts it.
  const size = bytes(block);
  return {
    subject: record.topic,
    headers: encodedHeaders(block),
    data: record.body,
    size: size + record.body.byteLength,
    headerSize: size,
  };
}

/** A header value busbar writes, trimmed as nats.js does; CR or LF would end the line and start another. */
export function value(text: string): string {
  if (BAD_VALUE.test(text))
    throw new InvalidHeaderError('A header value contains CR or LF, which NATS headers cannot carry');
  return text.trim();
}

/** JetStream refuses a header block over 65,535 bytes (its length is a uint16 in the store; error 10097). */
export const MAX_HEADER_BYTES = 65_535;

/**
 * A header block over JetStream's limit is an InvalidHeaderError before anything is sent (core's portable
 * limit on user headers keeps them well under it; a dead letter of a foreign message may not be).
 */
export function checkHeaderSize(record: NativeRecord, topic: string): void {
  if (record.headerSize > MAX_HEADER_BYTES) {
    throw new InvalidHeaderError(
      `The headers of the message for '${topic}' are about ${record.headerSize} bytes, over JetStream's limit of ${MAX_HEADER_BYTES}`,
    );
  }
}

/** What a delivery is made of, read from a JetStream message. */
export interface Decoded {
  readonly id: string;
  readonly key: string | undefined;
  readonly headers: Record<string, string>;
  readonly timestamp: number;
  readonly attempt: number;
  readonly contentType: string | undefined;
  /** Stream and stream sequence it was read from. */
  readonly stream: string;
  readonly sequence: number;
  /** The stream's creation time (ms) when known: with `stream` and `sequence`, the message's unique place. */
  readonly epoch: number | undefined;
}

/** `<stream>:<created>:<sequence>` (or `<stream>:<sequence>` when the creation time is not known). */
export function position(d: Pick<Decoded, 'stream' | 'sequence' | 'epoch'>): string {
  return d.epoch === undefined ? `${d.stream}:${d.sequence}` : `${d.stream}:${d.epoch}:${d.sequence}`;
}

/**
 * A message's id is its `Nats-Msg-Id` (busbar's own id, or the foreign publisher's) or, without a usable one,
 * `<stream>:<created>:<sequence>`: the broker's identity of the message, the same on every redelivery.
 * `created` (the stream's creation time in ms, `streamEpoch`) tells apart the messages of a stream deleted and
 * created again, whose sequences start over; without it the id is `<stream>:<sequence>`.
 */
export function decode(m: JsMsg, streamEpoch?: number): Decoded {
  const out: Record<string, string> = {};
  const block = headerBlock(m);
  const msgId = block === undefined ? headersFromNats(m, out) : parseHeaderBlock(block, out);
  const contentType = wire.cloudEvent ? readCloudEvent(out, wire.contentType) : wire.contentType;
  const info = ackInfo(m);
  const streamTime = Math.floor(info.timestampNanos / 1e6);
  const id = msgId === undefined ? undefined : usableId(idFrom(msgId, m.subject, out[HEADER.redrive]));
  const stream = info.stream;
  const sequence = info.streamSequence;
  return {
    id: id ?? position({ stream, sequence, epoch: streamEpoch }),
    key: out[HEADER.key],
    headers: out,
    timestamp: validTime(numericHeader(out[HEADER.timestamp], streamTime), streamTime),
    attempt: Number.isFinite(info.deliveryCount) && info.deliveryCount >= 1 ? info.deliveryCount : 1,
    contentType,
    stream,
    sequence,
    epoch: streamEpoch,
  };
}

/**
 * The codec's content type travels as `Content-Type` (the header HTTP and CloudEvents' bindings use); it
 * is `message.contentType`, not one of the message's headers. Read in any case, as headers from other
 * clients may be.
 */
export const CONTENT_TYPE = 'Content-Type';

function isContentType(name: string): boolean {
  return name.length === 12 && (name === CONTENT_TYPE || name.toLowerCase() === 'content-type');
}

/** What the last header parse found besides the headers (one object reused: the consume hot path). */
export const wire: { contentType: string | undefined; cloudEvent: boolean } = {
  contentType: undefined,
  cloudEvent: false,
};

/** An id from the wire, or undefined when it cannot serve as one (core's `usableId` rule). */
export function usableId(id: string | undefined): string | undefined {
  return isUsableId(id) ? id : undefined;
}

/** Largest time a Date holds (ms); a foreign `busbar-ts` beyond it would be an Invalid Date. */
const MAX_TIME = 8.64e15;

/** `time` when a Date can hold it, else `fallback` (the stream's own time, or now). */
export function validTime(time: number, fallback: number): number {
  if (Math.abs(time) <= MAX_TIME) return time;
  return Math.abs(fallback) <= MAX_TIME ? fallback : Date.now();
}

/** Headers through nats.js' parsed `MsgHdrs` (core NATS messages, and JetStream ones of an unexpected shape). */
export function headersFromNats(
  m: { readonly headers?: MsgHdrs | undefined },
  out: Record<string, string>,
): string | undefined {
  wire.contentType = undefined;
  wire.cloudEvent = false;
  let msgId: string | undefined;
  const h = m.headers;
  if (h) {
    for (const [name, values] of h) {
      if (name === MSG_ID) msgId = values[0];
      else if (isContentType(name)) wire.contentType ??= values[0];
      else if (!name.startsWith('Nats-')) {
        if (isCeHeader(name)) wire.cloudEvent = true;
        addWireHeader(out, name, values);
      }
    }
  }
  return msgId;
}

/** The headers of a core NATS message (a request, a reply): from its raw block when readable, else from nats.js. */
export function msgHeaders(m: Msg, out: Record<string, string>): string | undefined {
  const block = msgHeaderBlock(m);
  return block === undefined ? headersFromNats(m, out) : parseHeaderBlock(block, out);
}

/** Parses a header block the way nats.js does (names as sent, values trimmed), repeats joined by core's rule (', '). */
export function parseHeaderBlock(text: string, out: Record<string, string>): string | undefined {
  wire.contentType = undefined;
  wire.cloudEvent = false;
  let msgId: string | undefined;
  let pos = text.indexOf('\r\n');
  if (pos < 0) return undefined;
  pos += 2;
  while (pos < text.length) {
    let end = text.indexOf('\r\n', pos);
    if (end < 0) end = text.length;
    const colon = text.indexOf(':', pos);
    if (colon >= 0 && colon < end) {
      const name = text.slice(pos, colon);
      const value = text.slice(colon + 1, end).trim();
      if (name === MSG_ID) msgId ??= value;
      else if (isContentType(name)) wire.contentType ??= value;
      else if (!name.startsWith('Nats-')) {
        if (isCeHeader(name)) wire.cloudEvent = true;
        addWireHeader(out, name, value);
      }
    }
    pos = end + 2;
  }
  return msgId;
}

interface AckInfo {
  readonly stream: string;
  readonly deliveryCount: number;
  readonly streamSequence: number;
  readonly timestampNanos: number;
}

/**
 * The delivery facts in a JetStream ack subject, without nats.js' full info object:
 * `$JS.ACK.<stream>.<consumer>.<delivered>.<sseq>.<cseq>.<ts>.<pending>` or, with a domain and account hash,
 * `$JS.ACK.<domain>.<hash>.<stream>.<consumer>.<delivered>.<sseq>.<cseq>.<ts>.<pending>.<random>`.
 */
export function ackInfo(m: JsMsg): AckInfo {
  const reply = ackSubject(m);
  if (reply === undefined) return m.info;
  // Token boundaries by hand: split() made a string per token for the three numbers busbar reads (measured).
  const dots = DOTS;
  let count = 0;
  for (let i = reply.indexOf('.'); i >= 0 && count < dots.length; i = reply.indexOf('.', i + 1)) dots[count++] = i;
  const tokens = count + 1;
  const at = tokens === 9 ? 2 : tokens === 11 || tokens === 12 ? 4 : -1;
  if (at < 0) return m.info;
  // Token n spans (dots[n - 1], dots[n]); the tokens read here are never the last one.
  return {
    stream: reply.slice((dots[at - 1] as number) + 1, dots[at]),
    deliveryCount: digits(reply, (dots[at + 1] as number) + 1, dots[at + 2] as number),
    streamSequence: digits(reply, (dots[at + 2] as number) + 1, dots[at + 3] as number),
    timestampNanos: digits(reply, (dots[at + 4] as number) + 1, dots[at + 5] as number),
  };
}

const DOTS: number[] = new Array(12).fill(0);

/** A decimal number from text[start, end); NaN for anything else. */
function digits(text: string, start: number, end: number): number {
  if (start >= end) return Number.NaN;
  let n = 0;
  for (let i = start; i < end; i++) {
    const c = text.charCodeAt(i) - 48;
    if (c < 0 || c > 9) return Number.NaN;
    n = n * 10 + c;
  }
  return n;
}
