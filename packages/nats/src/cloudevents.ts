import { mediaType } from '@busbar/core/transport';

/**
 * The CloudEvents NATS protocol binding (1.0.3), binary mode: every attribute is a `ce-<name>` header,
 * `datacontenttype` included (`ce-datacontenttype`, not `Content-Type`, unlike HTTP), and every value is
 * percent-encoded (3.1.3.2: space, '"', '%' and anything outside printable ASCII as %XX of its UTF-8 bytes).
 * Core writes and reads the attributes as plain text under {@link CE_PREFIX}; this file applies the binding's
 * value encoding on the wire, both ways, and carries `datacontenttype` as the message's content type.
 * Only messages that carry `ce-specversion` are treated so, both ways, so any other `ce-` header is left
 * alone and a value round-trips unchanged through retries and dead letters.
 */
export const CE_PREFIX = 'ce-';
export const CE_DATA_CONTENT_TYPE = 'ce-datacontenttype';

/** `ce-...` in any case (NATS header names are case-insensitive per ADR-4). */
export function isCeHeader(name: string): boolean {
  return (
    name.length > 3 &&
    (name.charCodeAt(0) | 0x20) === 0x63 &&
    (name.charCodeAt(1) | 0x20) === 0x65 &&
    name.charCodeAt(2) === 0x2d
  );
}

function isNamed(name: string, lower: string): boolean {
  return name.length === lower.length && (name === lower || name.toLowerCase() === lower);
}

/** Whether a header record is a binary-mode CloudEvent (a `ce-specversion` header, in any case). */
export function carriesCloudEvent(headers: Readonly<Record<string, string>>): boolean {
  if (Object.hasOwn(headers, 'ce-specversion')) return true;
  for (const name in headers) if (isCeHeader(name) && isNamed(name, 'ce-specversion')) return true;
  return false;
}

export function isDataContentType(name: string): boolean {
  return isNamed(name, CE_DATA_CONTENT_TYPE);
}

/** Printable ASCII without '"' and '%': nothing to encode (the common case). */
const PLAIN = /^[!#$&-~]*$/;

/** The binding's percent-encoding of a header value (upper-case hex). */
export function percentEncode(value: string): string {
  if (PLAIN.test(value)) return value;
  let out = '';
  for (const ch of value) {
    const c = ch.codePointAt(0) as number;
    if (c > 0x20 && c < 0x7f && c !== 0x22 && c !== 0x25) {
      out += ch;
      continue;
    }
    for (const b of Buffer.from(ch, 'utf8')) out += `%${HEX[b >> 4]}${HEX[b & 15]}`;
  }
  return out;
}
const HEX = '0123456789ABCDEF';

/**
 * A header value back to the attribute: a double-quoted string is unquoted first (older senders), then one
 * round of percent-decoding. A value that does not decode (a stray '%', bytes that are not UTF-8, which the
 * binding says to reject) is kept as it arrived rather than dropping the message.
 */
export function percentDecode(value: string): string {
  let text = value;
  if (text.length >= 2 && text.startsWith('"') && text.endsWith('"')) {
    text = text.slice(1, -1).replace(/\\(.)/g, '$1');
  }
  if (!text.includes('%')) return text;
  try {
    return decodeURIComponent(text);
  } catch {
    return text;
  }
}

/**
 * Reads a binary-mode event in `headers` (as parsed from the wire): decodes its `ce-` values in place and
 * takes `ce-datacontenttype` out of the headers as the content type, which wins over `Content-Type` (the
 * event's own attribute; a binding sender need not write `Content-Type` at all). A message whose
 * `Content-Type` is `application/cloudevents...` is structured (the binding's rule) and left as it is.
 * Returns the message's content type.
 */
export function readCloudEvent(headers: Record<string, string>, contentType: string | undefined): string | undefined {
  if (!carriesCloudEvent(headers) || mediaType(contentType)?.startsWith('application/cloudevents')) return contentType;
  let result = contentType;
  for (const name in headers) {
    if (!isCeHeader(name)) continue;
    const value = percentDecode(headers[name] as string);
    if (isDataContentType(name)) {
      result = value === '' ? result : value;
      delete headers[name];
    } else headers[name] = value;
  }
  return result;
}
