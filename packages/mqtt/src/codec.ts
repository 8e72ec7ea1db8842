import { createHash } from 'node:crypto';
import type { OutgoingRecord } from '@busbar/core/transport';
import { attemptFromHeaders, HEADER } from '@busbar/core/transport';
import type { IPublishPacket } from 'mqtt';

/** MQTT 5 user properties as mqtt-packet models them (a repeated name becomes an array). */
export type UserProperties = Record<string, string | string[]>;

/** The due time of a retried message, ms since the epoch (driver-internal, on retry topics only). */
export const DUE = 'busbar-due';

export function toBuffer(body: Uint8Array): Buffer {
  return Buffer.isBuffer(body) ? body : Buffer.from(body.buffer, body.byteOffset, body.byteLength);
}

/** busbar's id, key and timestamp travel as `busbar-*` user properties next to the user's headers. */
export function userProperties(record: OutgoingRecord): UserProperties {
  const props: UserProperties = { ...record.headers };
  props[HEADER.id] = record.id;
  props[HEADER.timestamp] = String(record.timestamp);
  if (record.key !== undefined) props[HEADER.key] = record.key;
  return props;
}

/** Headers of a received message: every user property, a repeated one as its last value. */
export function headersOf(packet: IPublishPacket): Record<string, string> {
  const props = packet.properties?.userProperties as UserProperties | undefined;
  const headers: Record<string, string> = {};
  if (!props) return headers;
  for (const name of Object.keys(props)) {
    if (name === '__proto__') continue;
    const value = props[name];
    headers[name] = Array.isArray(value) ? String(value[value.length - 1] ?? '') : String(value);
  }
  return headers;
}

export interface DecodedFields {
  readonly id: string;
  readonly key: string | undefined;
  readonly timestamp: number;
  readonly attempt: number;
  readonly body: Uint8Array;
}

/**
 * Fields of a received message. A message busbar did not publish has no
 * `busbar-id`: its id is a hash of topic and body, stable across redeliveries.
 */
export function decodeFields(
  topic: string,
  headers: Readonly<Record<string, string>>,
  packet: IPublishPacket,
): DecodedFields {
  const body = typeof packet.payload === 'string' ? Buffer.from(packet.payload) : packet.payload;
  const ts = headers[HEADER.timestamp];
  const timestamp = ts === undefined ? Number.NaN : Number(ts);
  return {
    id:
      headers[HEADER.id] ?? createHash('sha256').update(topic).update('\u0000').update(body).digest('hex').slice(0, 32),
    key: headers[HEADER.key],
    timestamp: Number.isFinite(timestamp) ? timestamp : Date.now(),
    attempt: attemptFromHeaders(headers),
    body,
  };
}
