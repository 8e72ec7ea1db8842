import { createHash } from 'node:crypto';
import { HEADER, numericHeader, type RetryRequest } from '@busbar/core/transport';
import { headers as natsHeaders } from 'nats';
import {
  CE_DATA_CONTENT_TYPE,
  carriesCloudEvent,
  isCeHeader,
  isDataContentType,
  percentEncode,
} from './cloudevents.js';
import {
  CONTENT_TYPE,
  type Decoded,
  LEGACY_SOURCE_OFFSET,
  MSG_ID,
  type NativeRecord,
  usableId,
  validTime,
} from './codec.js';

/**
 * Retries do not go back through the group's consumer (a delayed `nak` would hold a slot of its
 * `max_ack_pending` until due): a failed message is copied to its group's retry subject, in a stream of
 * busbar's own, and read back by the group's retry consumer, which has its own ack window.
 * `_busbar` subjects are reserved (no topic may start with it), so no topic stream or wildcard
 * subscription can capture them.
 */
export const RETRY_ROOT = '_busbar.retry';

/** What the retry stream captures (and the key its name is cached under). */
export const RETRY_STREAM_KEY = `${RETRY_ROOT}.>`;

/** Headers only a retry copy carries; they are not part of the message core sees. */
const COPY_ONLY = new Set<string>([HEADER.id, HEADER.topic, HEADER.attempt, HEADER.timestamp, HEADER.due]);

/** The subject of one group's retries: its topic's stream and its consumer name keep it to this group. */
export function retrySubject(stream: string, consumer: string): string {
  return `${RETRY_ROOT}.${stream}.${consumer}`;
}

/**
 * The group's retry consumer on the retry stream. One retry stream may serve several stream prefixes
 * (busbar deployments), whose consumer names can be equal: the topic's stream is folded in.
 */
export function retryConsumerName(stream: string, consumer: string): string {
  return `${consumer}_r${createHash('sha1').update(stream).digest('hex').slice(0, 6)}`;
}

/** What a delivery gives its retry copy. */
export interface RetrySource {
  readonly id: string;
  readonly topic: string;
  readonly key: string | undefined;
  readonly body: Uint8Array;
  readonly timestamp: number;
  readonly contentType: string | undefined;
  /** `<stream>:<sequence>` of the delivered message: one copy per delivered message, whatever is re-sent. */
  readonly position: string;
}

/**
 * The retry copy of a failed message: the headers core asks for, plus the id, original topic, attempt,
 * publish time and due time. Its `Nats-Msg-Id` is the position of the message it replaces, so a retry
 * published twice (an ack lost, a re-send after a reconnect) is stored once.
 */
export function retryCopy(subject: string, source: RetrySource, request: RetryRequest, now: number): NativeRecord {
  const h = natsHeaders();
  h.set(MSG_ID, `${subject}:${source.position}`);
  let size = 64 + subject.length + source.position.length;
  // A CloudEvent's attributes are written as the binding says, as on any publish (they are read back so).
  const cloudEvent = carriesCloudEvent(request.headers);
  for (const name in request.headers) {
    if (COPY_ONLY.has(name) || name === HEADER.key) continue;
    let value = request.headers[name] as string;
    if (cloudEvent && isCeHeader(name)) {
      if (isDataContentType(name)) continue;
      value = percentEncode(value);
    }
    try {
      h.append(name, value);
    } catch {
      continue; // a foreign header nats.js cannot write back (checked again when dead-lettered)
    }
    size += Buffer.byteLength(name) + Buffer.byteLength(value) + 4;
  }
  const due = now + Math.max(0, request.delayMs);
  const own: [string, string][] = [
    [HEADER.id, source.id],
    [HEADER.topic, source.topic],
    [HEADER.attempt, String(request.attempt)],
    [HEADER.timestamp, String(source.timestamp)],
    [HEADER.due, String(due)],
  ];
  if (source.key !== undefined) own.push([HEADER.key, source.key]);
  if (source.contentType) own.push([CONTENT_TYPE, source.contentType]);
  if (source.contentType && cloudEvent) own.push([CE_DATA_CONTENT_TYPE, percentEncode(source.contentType)]);
  for (const [name, value] of own) {
    h.set(name, value);
    size += name.length + Buffer.byteLength(value) + 4;
  }
  return { subject, headers: h, data: source.body, size: size + source.body.byteLength, headerSize: size };
}

/** A retry copy read back: the original id, topic, attempt and time, and when it is due. */
export interface CopyFacts extends Decoded {
  readonly topic: string;
  readonly due: number;
}

/**
 * The message a retry copy stands for. Header values are foreign input (another client may publish to
 * the subject): anything unreadable falls back (the copy's own id, topic and time; attempt 2).
 */
export function fromRetryCopy(d: Decoded, subject: string): CopyFacts {
  const h = d.headers;
  const headers: Record<string, string> = {};
  for (const name in h) if (!COPY_ONLY.has(name)) headers[name] = h[name] as string;
  // A copy written before core's header registry names its source position the old way: its dead letter
  // gets the current name.
  const legacy = headers[LEGACY_SOURCE_OFFSET];
  if (legacy !== undefined) {
    headers[HEADER.sourceOffset] ??= legacy;
    delete headers[LEGACY_SOURCE_OFFSET];
  }
  const attempt = Math.floor(numericHeader(h[HEADER.attempt], 2));
  return {
    ...d,
    id: usableId(h[HEADER.id]) ?? d.id,
    topic: h[HEADER.topic] || subject,
    headers,
    timestamp: validTime(numericHeader(h[HEADER.timestamp], d.timestamp), d.timestamp),
    attempt: attempt >= 1 ? attempt : 1,
    due: numericHeader(h[HEADER.due], 0),
  };
}
