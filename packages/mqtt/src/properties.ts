import { ConfigError, InvalidHeaderError, PayloadTooLargeError } from '@busbar/core';
import { HEADER } from '@busbar/core/transport';
import type { UserProperties } from './codec.js';

/** MQTT's limit on one UTF-8 string (a topic, a user property name or value), in bytes. */
export const MAX_STRING_BYTES = 65_535;

/**
 * Code points MQTT 5 (1.5.4) forbids or says should not appear in a UTF-8 string: U+0000, the C0 and C1
 * controls (tab and line feed included), non-characters, and (in JavaScript) lone surrogates, which UTF-8
 * cannot encode (Node would send U+FFFD). Mosquitto closes the connection of a client that sends any of
 * them, and mqtt.js then re-sends the same packet after every reconnect.
 */
const UNSAFE = /[\p{Cc}\p{Cs}\p{Noncharacter_Code_Point}]/u;

function codePoint(char: string): string {
  return `U+${(char.codePointAt(0) as number).toString(16).toUpperCase().padStart(4, '0')}`;
}

/** Why `text` cannot travel as an MQTT 5 UTF-8 string, or undefined when it can. */
export function stringProblem(text: string): string | undefined {
  const bad = UNSAFE.exec(text);
  if (bad) {
    const what = /\p{Cs}/u.test(bad[0]) ? 'a lone surrogate' : `the character ${codePoint(bad[0])}`;
    return `contains ${what}, which MQTT 5 strings must not carry (the broker drops the connection)`;
  }
  // A UTF-16 code unit is at most 3 UTF-8 bytes: count only when it could matter.
  if (text.length * 3 > MAX_STRING_BYTES) {
    const bytes = Buffer.byteLength(text);
    if (bytes > MAX_STRING_BYTES) return `is ${bytes} bytes in UTF-8, over MQTT's limit of ${MAX_STRING_BYTES}`;
  }
  return undefined;
}

/*
 * HEADER.mqttEscaped is the user property listing (one name per value) the properties whose values were
 * escaped: a header value core allows but MQTT strings must not carry (a tab, a non-character) travels
 * escaped and reads back as sent.
 */

const UNSAFE_ALL = new RegExp(`[\\\\]|${UNSAFE.source}`, 'gu');
const ESCAPE_SEQUENCE = /\\(\\|u[0-9a-fA-F]{4})/g;

/** `\` doubled and every unsafe UTF-16 unit as `\uXXXX`: printable, and reversible by {@link unescapeValue}. */
export function escapeValue(text: string): string {
  return text.replace(UNSAFE_ALL, (char) =>
    char === '\\'
      ? '\\\\'
      : Array.from({ length: char.length }, (_, i) => `\\u${char.charCodeAt(i).toString(16).padStart(4, '0')}`).join(
          '',
        ),
  );
}

export function unescapeValue(text: string): string {
  return text.replace(ESCAPE_SEQUENCE, (_, code: string) =>
    code === '\\' ? '\\' : String.fromCharCode(Number.parseInt(code.slice(1), 16)),
  );
}

function shown(name: string): string {
  const cut = name.length > 60 ? `${name.slice(0, 57)}...` : name;
  return JSON.stringify(cut);
}

/**
 * The user properties to send for one message, checked before anything reaches mqtt.js: a property the
 * broker would answer by dropping the connection must fail this publish only, typed, instead of poisoning
 * the session. A value with characters MQTT strings must not carry is escaped (and named in
 * {@link HEADER.mqttEscaped}); a name with them, or a string over 65,535 bytes, is an `InvalidHeaderError`.
 */
export function safeProperties(props: UserProperties): UserProperties {
  let out = props;
  let escaped: string[] | undefined;
  for (const name of Object.keys(props)) {
    const nameProblem = stringProblem(name);
    if (nameProblem) throw new InvalidHeaderError(`Header name ${shown(name)} ${nameProblem}`);
    const value = props[name] as string | string[];
    const values = Array.isArray(value) ? value : [value];
    let changed = false;
    const sent = values.map((one) => {
      if (!UNSAFE.test(one)) return one;
      changed = true;
      return escapeValue(one);
    });
    for (const one of sent) {
      if (one.length * 3 > MAX_STRING_BYTES && Buffer.byteLength(one) > MAX_STRING_BYTES) {
        const what = changed ? 'escaped for MQTT, ' : '';
        throw new InvalidHeaderError(
          `Header ${shown(name)} is ${what}${Buffer.byteLength(one)} bytes in UTF-8, over MQTT's limit of ${MAX_STRING_BYTES}`,
        );
      }
    }
    if (changed) {
      if (out === props) out = { ...props };
      out[name] = Array.isArray(value) ? sent : (sent[0] as string);
      escaped ??= [];
      escaped.push(name);
    }
  }
  if (escaped) (out as UserProperties)[HEADER.mqttEscaped] = escaped.length === 1 ? (escaped[0] as string) : escaped;
  return out;
}

/** The content type travels as an MQTT 5 string too: a custom codec's must be one. */
export function checkContentType(contentType: string | undefined): void {
  if (contentType === undefined) return;
  const problem = stringProblem(contentType);
  if (problem) throw new ConfigError(`The codec's content type ${shown(contentType)} ${problem}`);
}

function varintBytes(n: number): number {
  return n < 128 ? 1 : n < 16_384 ? 2 : n < 2_097_152 ? 3 : 4;
}

function stringBytes(text: string): number {
  return 2 + Buffer.byteLength(text);
}

/** Size of the PUBLISH packet mqtt-packet will write (no topic alias), to compare with the broker's maximum. */
export function publishPacketBytes(
  path: string,
  qos: number,
  props: UserProperties,
  contentType: string | undefined,
  payloadBytes: number,
): number {
  let properties = contentType === undefined ? 0 : 1 + stringBytes(contentType);
  for (const name of Object.keys(props)) {
    const value = props[name] as string | string[];
    for (const one of Array.isArray(value) ? value : [value]) properties += 1 + stringBytes(name) + stringBytes(one);
  }
  const remaining = stringBytes(path) + (qos > 0 ? 2 : 0) + varintBytes(properties) + properties + payloadBytes;
  return 1 + varintBytes(remaining) + remaining;
}

/** Rejects a message whose packet the broker's Maximum Packet Size would refuse (it drops the connection). */
export function checkPacketSize(topic: string, size: number, maximumPacketSize: number | undefined): void {
  if (maximumPacketSize !== undefined && size > maximumPacketSize) {
    throw new PayloadTooLargeError(size, maximumPacketSize, topic);
  }
}
