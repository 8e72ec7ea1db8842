import { InvalidHeaderError } from '@busbar/core';
import { type Delivery, HEADER, type OutgoingRecord } from '@busbar/core/transport';
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

/** `<stream>:<sequence>` of the message a dead letter came from. */
export const SOURCE_SEQ = 'busbar-dl-seq';

/** Re-published records (dead letters, re-drives) keep their original time; fresh ones use the stream's timestamp. */
const STALE_MS = 1_000;

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
  if (now - record.timestamp > STALE_MS) {
    h.set(HEADER.timestamp, String(record.timestamp));
    size += 30;
  }
  return { subject: record.topic, headers: h, data: record.body, size: size + record.body.byteLength };
}

/** A message busbar did not publish has no `Nats-Msg-Id`: its id is `<stream>:<sequence>`. */
export function decode(m: JsMsg, settle: Pick<Delivery, 'ack' | 'retry' | 'release'>): Delivery {
  const out: Record<string, string> = {};
  let msgId: string | undefined;
  const h = m.headers;
  if (h) {
    for (const [name, values] of h) {
      if (name === MSG_ID) msgId = values[0];
      else if (!name.startsWith('Nats-')) out[name] = values.length === 1 ? (values[0] as string) : values.join(',');
    }
  }
  const info = m.info;
  // Copied into a dead letter by core (and dropped on re-drive with the other busbar-dl-* headers), so a dead
  // letter names the stream position of the message it came from.
  out[SOURCE_SEQ] ??= `${info.stream}:${info.streamSequence}`;
  const ts = out[HEADER.timestamp];
  return {
    id: msgId === undefined ? `${info.stream}:${info.streamSequence}` : idFrom(msgId, m.subject, out[HEADER.redrive]),
    topic: m.subject,
    key: out[HEADER.key],
    headers: out,
    body: m.data,
    timestamp: ts === undefined ? Math.floor(info.timestampNanos / 1e6) : Number(ts),
    attempt: info.deliveryCount,
    raw: m,
    ack: settle.ack,
    retry: settle.retry,
    release: settle.release,
  };
}
