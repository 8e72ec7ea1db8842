import { createHash } from 'node:crypto';
import type { OutgoingRecord } from '@busbar/core/transport';
import { addWireHeader, attemptFromHeaders, HEADER, numericHeader } from '@busbar/core/transport';
import type { IPublishPacket } from 'mqtt';
import { ESCAPED_NAMES, unescapeValue } from './properties.js';

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

/** `<ms> <id>`: what busbar writes in its `busbar` property; anything else is a foreign property of that name. */
const META_VALUE = /^(\d{1,16}) (\S.*)$/s;

/**
 * Headers of a received message: every user property through core's wire rule (a repeated name joins its
 * values with ', ', a `__proto__` name stays an own property). busbar's `busbar` property becomes the
 * `busbar-ts` and `busbar-id` headers when it has busbar's form; a foreign one with other content stays
 * an ordinary header named `busbar`.
 */
export function headersOf(packet: IPublishPacket): Record<string, string> {
  const props = packet.properties?.userProperties as UserProperties | undefined;
  const headers: Record<string, string> = {};
  if (!props) return headers;
  for (const name of Object.keys(props)) {
    const raw = props[name];
    const values = Array.isArray(raw) ? raw : [raw];
    if (name === META && values.length === 1) {
      const match = META_VALUE.exec(String(values[0]));
      if (match) {
        headers[HEADER.timestamp] = match[1] as string;
        headers[HEADER.id] = match[2] as string;
        continue;
      }
    }
    if (name === ESCAPED_NAMES) continue;
    for (const value of values) addWireHeader(headers, name, value);
  }
  const escaped = props[ESCAPED_NAMES];
  if (escaped !== undefined) {
    for (const name of new Set(Array.isArray(escaped) ? escaped : [escaped])) {
      const value = Object.hasOwn(headers, name) ? headers[name] : undefined;
      // An own property even for a name like `__proto__`, as addWireHeader does.
      if (value !== undefined)
        Object.defineProperty(headers, name, {
          value: unescapeValue(value),
          enumerable: true,
          writable: true,
          configurable: true,
        });
    }
  }
  return headers;
}

/** The largest time a JavaScript Date holds; a foreign timestamp past it would make an Invalid Date. */
const MAX_DATE_MS = 8.64e15;

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
  const ts = numericHeader(headers[HEADER.timestamp], Number.NaN);
  const id = headers[HEADER.id];
  return {
    id: id || createHash('sha256').update(topic).update('\u0000').update(body).digest('hex').slice(0, 32),
    key: headers[HEADER.key],
    timestamp: ts >= 0 && ts <= MAX_DATE_MS ? ts : Date.now(),
    attempt: attemptFromHeaders(headers),
    body,
  };
}
