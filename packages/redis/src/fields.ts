import { isUtf8 } from 'node:buffer';
import { addWireHeader } from '@busbar/core/transport';

/**
 * How the field names of a stream entry are read, busbar's own and a foreign producer's alike:
 *
 * - `body`: the body; `data`, `payload`, `message`, `value`: the body when it is the entry's only data field;
 * - `id`, `key`, `ts`: busbar id, partition key, publish time (also data of an entry read as an object);
 * - `content-type` (any case) or `ct`: the content type;
 * - `h:<name>`: header `<name>`; `ce-<attr>` / `ce_<attr>` (any case): header of that name (CloudEvents);
 * - `h`: headers as one JSON object (the format busbar wrote before headers became fields);
 * - `r`: a retry payload, in a group's retry stream (anything else in `r` is data);
 * - anything else: data.
 */
export type Field = 'body' | 'id' | 'ts' | 'ct' | 'key' | 'h' | 'r' | 'header' | 'alias' | 'data';

/** The prefix of a header field. */
export const HEADER_FIELD = 'h:';
/** The CloudEvents attribute prefix busbar writes (`Transport.cloudEventsPrefix`): such headers go bare. */
export const CE_PREFIX = 'ce-';
/** The field busbar writes the content type in (`ct` is read too: the format before). */
export const CONTENT_TYPE_FIELD = 'content-type';

// Field names compared as bytes: a string per name per entry was a measurable part of consume.
export function fieldOf(name: Buffer): Field {
  const n = name.length;
  const c0 = name[0] as number;
  if (n >= 2 && c0 === 0x68 && name[1] === 0x3a) return 'header';
  if (n >= 3 && (c0 | 0x20) === 0x63 && ((name[1] as number) | 0x20) === 0x65 && (name[2] === 0x2d || name[2] === 0x5f))
    return 'header';
  switch (n) {
    case 1:
      return c0 === 0x68 ? 'h' : c0 === 0x72 ? 'r' : 'data';
    case 2:
      if (c0 === 0x69 && name[1] === 0x64) return 'id';
      if (c0 === 0x63 && name[1] === 0x74) return 'ct';
      return c0 === 0x74 && name[1] === 0x73 ? 'ts' : 'data';
    case 3:
      return c0 === 0x6b && name[1] === 0x65 && name[2] === 0x79 ? 'key' : 'data';
    case 4:
      if (c0 === 0x62 && name[1] === 0x6f && name[2] === 0x64 && name[3] === 0x79) return 'body';
      return name.equals(DATA) ? 'alias' : 'data';
    case 5:
      return name.equals(VALUE) ? 'alias' : 'data';
    case 7:
      return name.equals(PAYLOAD) || name.equals(MESSAGE) ? 'alias' : 'data';
    case 12:
      return isContentType(name) ? 'ct' : 'data';
    default:
      return 'data';
  }
}

const CONTENT_TYPE = Buffer.from(CONTENT_TYPE_FIELD);

/** `content-type` in any case, compared without making a string (it is on every entry busbar writes). */
function isContentType(name: Buffer): boolean {
  for (let i = 0; i < CONTENT_TYPE.length; i++) {
    const b = name[i] as number;
    if ((b >= 0x41 && b <= 0x5a ? b | 0x20 : b) !== CONTENT_TYPE[i]) return false;
  }
  return true;
}

const DATA = Buffer.from('data');
const VALUE = Buffer.from('value');
const PAYLOAD = Buffer.from('payload');
const MESSAGE = Buffer.from('message');

/** The header a `header` field stands for: `h:<name>` -> `<name>`, a `ce-`/`ce_` field by its own name. */
export function headerName(name: Buffer): string {
  return name[0] === 0x68 ? name.toString('utf8', 2) : name.toString('utf8');
}

/**
 * A field value as header text by core's wire rule for bytes (valid UTF-8 as text, else base64), without
 * core's TextDecoder: a string per header per entry is on the consume path.
 */
export function fieldText(value: Buffer): string {
  const text = value.toString('utf8');
  // Invalid UTF-8 decodes to U+FFFD; only then is the (rarer) exact check worth its call.
  return text.includes('\uFFFD') && !isUtf8(value) ? value.toString('base64') : text;
}

/** The field a header is written in: CloudEvents attributes bare (as a hand-built producer writes them), the rest `h:<name>`. */
export function headerField(name: string): string {
  return name.startsWith(CE_PREFIX) ? name : `${HEADER_FIELD}${name}`;
}

/**
 * The body of a foreign entry with several data fields (or one not named like a body): a JSON object of
 * every data field plus `id`, `key` and `ts`, in entry order, values as strings by core's wire rule (bytes
 * that are not UTF-8 as base64), a repeated field joined with ', '. Headers and the content type stay out.
 */
export function objectBody(fields: Buffer[]): Buffer {
  const object: Record<string, string> = {};
  for (let i = 0; i + 1 < fields.length; i += 2) {
    const name = fields[i] as Buffer;
    const kind = fieldOf(name);
    if (kind === 'data' || kind === 'alias' || kind === 'r' || kind === 'id' || kind === 'key' || kind === 'ts') {
      addWireHeader(object, name.toString('utf8'), fieldText(fields[i + 1] as Buffer));
    }
  }
  return Buffer.from(JSON.stringify(object));
}
