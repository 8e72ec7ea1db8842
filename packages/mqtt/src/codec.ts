import { randomUUID } from 'node:crypto';
import type { OutgoingRecord } from '@busbar/core/transport';
import {
  addWireHeader,
  attemptFromHeaders,
  HEADER,
  usableId as isUsableId,
  numericHeader,
  wireHeaderValue,
} from '@busbar/core/transport';
import type { IPublishPacket } from 'mqtt';
import { unescapeValue } from './properties.js';

/** MQTT 5 user properties as mqtt-packet models them (a repeated name becomes an array). */
export type UserProperties = Record<string, string | string[]>;

export function toBuffer(body: Uint8Array): Buffer {
  return Buffer.isBuffer(body) ? body : Buffer.from(body.buffer, body.byteOffset, body.byteLength);
}

/*
 * busbar's publish time and id travel together as one user property, HEADER.mqttMeta (`busbar: <ms> <id>`):
 * every MQTT 5 property costs mqtt.js a deep clone and several small socket writes per message (measured: the
 * main share of busbar's publish cost over a bare QoS 1 publish). Received, it reads back as the `busbar-ts`
 * and `busbar-id` headers; messages with those two as separate properties (busbar 0.1.0) read the same.
 *
 * A header named `busbar` (core allows it: only `busbar-` names are reserved; a CloudEvents extension of that
 * name, a foreign property carried into a retry or dead letter) would collide with busbar's own property, so
 * it travels as HEADER.mqttRenamedMeta and reads back as `busbar`.
 */
const META = HEADER.mqttMeta;
const RENAMED_META = HEADER.mqttRenamedMeta;

/** The headers as user properties, with a header named `busbar` moved out of the way of busbar's own. */
export function headerProperties(headers: Readonly<Record<string, string>>): UserProperties {
  const props: UserProperties = { ...headers };
  if (Object.hasOwn(headers, META)) props[RENAMED_META] = headers[META] as string;
  return props;
}

/** The user properties of a message: the user's headers, busbar's id and time, and its key if set. */
export function userProperties(record: OutgoingRecord): UserProperties {
  const props = headerProperties(record.headers);
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
    if (name === HEADER.mqttEscaped) continue;
    const header = name === RENAMED_META ? META : name;
    for (const value of values) addWireHeader(headers, header, value);
  }
  const escaped = props[HEADER.mqttEscaped];
  if (escaped !== undefined) {
    for (const name of new Set(Array.isArray(escaped) ? escaped : [escaped])) {
      const header = name === RENAMED_META ? META : name;
      const value = Object.hasOwn(headers, header) ? headers[header] : undefined;
      // An own property even for a name like `__proto__`, as addWireHeader does.
      if (value !== undefined)
        Object.defineProperty(headers, header, {
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
  /** No usable id on the wire: `id` is a random UUID (see {@link messageId}). */
  readonly idGenerated: boolean;
  readonly key: string | undefined;
  readonly timestamp: number;
  readonly attempt: number;
  readonly body: Uint8Array;
}

/** The user property a foreign producer can name its message id in. */
export const MESSAGE_ID = 'message-id';

/** An id from the wire, or undefined when it is empty, over 1 KB or has control characters (taken as absent). */
export function usableId(text: string | undefined): string | undefined {
  return isUsableId(text) ? text : undefined;
}

/**
 * The message id, first usable one of: busbar's own (the `busbar` property, or 0.1.0's `busbar-id`); a
 * CloudEvent's `id` user property (MQTT binding, binary mode: with `specversion`); a `message-id` user
 * property; the MQTT 5 Correlation Data (UTF-8 text, else base64). MQTT has no message id of its own, so
 * anything else gets a random UUID (`generated`), a new one on every delivery (a QoS 1 redelivery too).
 */
export function messageId(
  headers: Readonly<Record<string, string>>,
  packet: IPublishPacket,
): { id: string; generated: boolean } {
  const own = (name: string) => (Object.hasOwn(headers, name) ? usableId(headers[name]) : undefined);
  const correlation = packet.properties?.correlationData;
  const id =
    own(HEADER.id) ??
    (Object.hasOwn(headers, 'specversion') ? own('id') : undefined) ??
    own(MESSAGE_ID) ??
    (correlation === undefined ? undefined : usableId(wireHeaderValue(correlation)));
  return id === undefined ? { id: randomUUID(), generated: true } : { id, generated: false };
}

/** Fields of a received message (id: see {@link messageId}). */
export function decodeFields(headers: Readonly<Record<string, string>>, packet: IPublishPacket): DecodedFields {
  const body = typeof packet.payload === 'string' ? Buffer.from(packet.payload) : packet.payload;
  const ts = numericHeader(headers[HEADER.timestamp], Number.NaN);
  const { id, generated } = messageId(headers, packet);
  return {
    id,
    idGenerated: generated,
    key: headers[HEADER.key],
    timestamp: ts >= 0 && ts <= MAX_DATE_MS ? ts : Date.now(),
    attempt: attemptFromHeaders(headers),
    body,
  };
}
