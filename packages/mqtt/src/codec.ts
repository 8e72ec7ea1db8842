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

/**
 * busbar's publish time and id travel together as one user property, `busbar: <ms> <id>`: every MQTT 5
 * property costs mqtt.js a deep clone and several small socket writes per message (measured: the main share
 * of busbar's publish cost over a bare QoS 1 publish). Received, it reads back as the `busbar-ts` and
 * `busbar-id` headers; messages with those two as separate properties (busbar 0.1.0) read the same.
 */
export const META = 'busbar';

/** The user properties of a message: the user's headers, busbar's id and time, and its key if set. */
export function userProperties(record: OutgoingRecord): UserProperties {
  const props: UserProperties = { ...record.headers };
  props[META] = `${record.timestamp} ${record.id}`;
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
    const raw = props[name];
    const value = Array.isArray(raw) ? String(raw[raw.length - 1] ?? '') : String(raw);
    if (name !== META) headers[name] = value;
    else {
      const space = value.indexOf(' ');
      if (space > 0) {
        headers[HEADER.timestamp] = value.slice(0, space);
        headers[HEADER.id] = value.slice(space + 1);
      }
    }
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
