import { InvalidHeaderError } from '@busbar/core';
import { HEADER, keepsOwnTimestamp, type OutgoingRecord } from '@busbar/core/transport';
import { type JsMsg, type MsgHdrs, headers as natsHeaders } from 'nats';

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
function idFrom(msgId: string, topic: string, redrive: string | undefined): string {
  const prefix = `${topic}:`;
  if (!msgId.startsWith(prefix)) return msgId;
  const suffix = redrive === undefined ? '' : `:r${redrive}`;
  return suffix && msgId.endsWith(suffix) ? msgId.slice(prefix.length, -suffix.length) : msgId.slice(prefix.length);
}

/**
 * `<stream>:<sequence>` of the message a dead letter came from (written by core when dead-lettering, and
 * dropped on re-drive with the other busbar-dl-* headers).
 */
export const SOURCE_SEQ = 'busbar-dl-seq';

export interface NativeRecord {
  readonly subject: string;
  readonly headers: MsgHdrs;
  readonly data: Uint8Array;
  /** headers + data, as the server counts it against `max_payload`. */
  readonly size: number;
}

/** Checks user header names/values against NATS' header rules; throws before anything is sent. */
export function checkNatsHeaders(headers: Readonly<Record<string, string>>): void {
  for (const name in headers) {
    const value = headers[name] as string;
    if (value.includes('\r') || value.includes('\n')) {
      throw new InvalidHeaderError(`Header '${name}' contains CR or LF, which NATS headers cannot carry`);
    }
    if ((name.charCodeAt(0) | 0x20) === 0x6e && name.slice(0, 5).toLowerCase() === 'nats-') {
      throw new InvalidHeaderError(`Header name '${name}' is reserved: the 'Nats-' prefix is the server's`);
    }
  }
}

export function encode(record: OutgoingRecord, now: number): NativeRecord {
  const h = natsHeaders();
  h.set(MSG_ID, dedupId(record.topic, record.id, record.headers));
  let size = 20 + MSG_ID.length + record.topic.length + record.id.length;
  for (const name in record.headers) {
    const value = record.headers[name] as string;
    h.append(name, value);
    size += name.length + value.length + 4;
  }
  if (record.key !== undefined) {
    h.set(HEADER.key, record.key);
    size += HEADER.key.length + record.key.length + 4;
  }
  if (keepsOwnTimestamp(record, now)) {
    h.set(HEADER.timestamp, String(record.timestamp));
    size += 30;
  }
  return { subject: record.topic, headers: h, data: record.body, size: size + record.body.byteLength };
}

/** What a delivery is made of, read from a JetStream message. */
export interface Decoded {
  readonly id: string;
  readonly key: string | undefined;
  readonly headers: Record<string, string>;
  readonly timestamp: number;
  readonly attempt: number;
  /** Stream and stream sequence it was read from. */
  readonly stream: string;
  readonly sequence: number;
}

/** A message busbar did not publish has no `Nats-Msg-Id`: its id is `<stream>:<sequence>`. */
export function decode(m: JsMsg): Decoded {
  const out: Record<string, string> = {};
  const block = headerBlock(m);
  const msgId = block === undefined ? headersFromNats(m, out) : parseHeaderBlock(block, out);
  const info = ackInfo(m);
  const ts = out[HEADER.timestamp];
  return {
    id: msgId === undefined ? `${info.stream}:${info.streamSequence}` : idFrom(msgId, m.subject, out[HEADER.redrive]),
    key: out[HEADER.key],
    headers: out,
    timestamp: ts === undefined ? Math.floor(info.timestampNanos / 1e6) : Number(ts),
    attempt: info.deliveryCount,
    stream: info.stream,
    sequence: info.streamSequence,
  };
}

function headersFromNats(m: JsMsg, out: Record<string, string>): string | undefined {
  let msgId: string | undefined;
  const h = m.headers;
  if (h) {
    for (const [name, values] of h) {
      if (name === MSG_ID) msgId = values[0];
      else if (!name.startsWith('Nats-')) out[name] = values.length === 1 ? (values[0] as string) : values.join(',');
    }
  }
  return msgId;
}

/**
 * The raw `NATS/1.0\r\nName: value\r\n...` block of a message, from nats.js' message object (nats 2.x keeps it
 * as `_rdata` up to `_msg.hdr`). Parsing it here skips nats.js' per-header validation and canonicalization:
 * measured at about a third of busbar's NATS consume time. Undefined when the shape is not the expected one,
 * and the public `m.headers` is used instead.
 */
function headerBlock(m: JsMsg): string | undefined {
  const impl = (m as unknown as { msg?: { _msg?: { hdr?: unknown }; _rdata?: unknown } }).msg;
  const hdr = impl?._msg?.hdr;
  const data = impl?._rdata;
  if (typeof hdr !== 'number' || !(data instanceof Uint8Array)) return undefined;
  if (hdr <= 0) return '';
  return Buffer.from(data.buffer, data.byteOffset, hdr).toString('utf8');
}

/** Parses a header block the way nats.js does (names as sent, values trimmed, repeats joined with ','). */
export function parseHeaderBlock(text: string, out: Record<string, string>): string | undefined {
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
      else if (!name.startsWith('Nats-')) {
        const before = out[name];
        out[name] = before === undefined ? value : `${before},${value}`;
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
  // nats.js' JsMsg has the ack subject as `reply` (not in its types); anything unexpected goes through `m.info`.
  const reply = (m as unknown as { reply?: unknown }).reply;
  if (typeof reply !== 'string' || !reply.startsWith('$JS.ACK.')) return m.info;
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
