/**
 * kafkajs' record decoder and encoder, rewritten for speed with the same results: kafkajs' own are replaced
 * by these in internals.ts (installRecordCodec). Plain code on kafkajs' `Decoder` (the parts listed in
 * RecordReader) and on Buffers.
 */

/** What kafkajs' record decoder reads a record with (its `Decoder`, the parts used here). */
export interface RecordReader {
  buffer: Buffer;
  offset: number;
  readInt8(): number;
  readVarInt(): number;
  readVarLong(): { toString(): string };
  readVarIntBytes(): Buffer | null;
}
/** The batch a record is in, as kafkajs' batch decoder hands it (strings of 64-bit integers). */
export interface RecordBatchContext {
  readonly firstOffset: string;
  readonly firstTimestamp: string;
  readonly maxTimestamp?: string;
  readonly timestampType?: number;
  readonly magicByte?: number;
  readonly isControlBatch?: boolean;
}
const LOG_APPEND_TIME = 1;

/** A canonical decimal string of a safe integer as a number; undefined otherwise (then BigInt). */
function safeNumber(text: string): number | undefined {
  const n = Number(text);
  return Number.isSafeInteger(n) && String(n) === text ? n : undefined;
}
let lastBatch: { context: RecordBatchContext; offset?: number; timestamp?: number } | undefined;
/** `base + delta` as kafkajs writes it (`Long.fromValue(base).add(delta).toString()`: BigInt, not wrapped). */
function plus(base: string, safe: number | undefined, delta: number | bigint): string {
  if (safe !== undefined && typeof delta === 'number') {
    const sum = safe + delta;
    if (Number.isSafeInteger(sum)) return String(sum);
  }
  return String(BigInt(base) + BigInt(delta));
}

/**
 * kafkajs' record decoder (`protocol/recordBatch/record/v0/decoder.js`), with the same result for every
 * input (test/records.test.ts compares the two on random and hostile records), without its costs
 * per record: headers merged by an object spread per header (`reduce((obj, h) => ({ ...obj, [key]: ... }))`),
 * a Buffer slice per header name, and the offset and timestamp as BigInt arithmetic on strings. 2.0 -> 0.7 us
 * per record of busbar's (two headers), 0.44 -> 0.13 for a record without headers (Node 24).
 */
export function decodeRecord(decoder: RecordReader, batchContext = {} as RecordBatchContext): Record<string, unknown> {
  const { firstOffset, firstTimestamp, magicByte, isControlBatch = false, timestampType, maxTimestamp } = batchContext;
  // Every record of a batch shares its context: its bases are parsed once.
  if (lastBatch?.context !== batchContext) {
    const offset = safeNumber(String(firstOffset));
    const timestamp = safeNumber(String(firstTimestamp));
    lastBatch = { context: batchContext };
    if (offset !== undefined) lastBatch.offset = offset;
    if (timestamp !== undefined) lastBatch.timestamp = timestamp;
  }
  const attributes = decoder.readInt8();
  const appendTime = timestampType === LOG_APPEND_TIME && Boolean(maxTimestamp);
  let timestamp: string;
  const first = decoder.buffer[decoder.offset];
  if (first !== undefined && first < 0x80 && !appendTime) {
    // A one-byte zigzag varlong: the usual delta (records of a send share a millisecond or a few).
    decoder.offset++;
    timestamp = plus(String(firstTimestamp), lastBatch.timestamp, (first >>> 1) ^ -(first & 1));
  } else {
    const delta = decoder.readVarLong();
    timestamp = appendTime ? (maxTimestamp as string) : plus(String(firstTimestamp), undefined, BigInt(String(delta)));
  }
  const offset = plus(String(firstOffset), lastBatch.offset, decoder.readVarInt());
  const key = decoder.readVarIntBytes();
  const value = decoder.readVarIntBytes();
  const count = decoder.readVarInt();
  // As kafkajs' `new Array(count)`: a corrupt count throws its RangeError.
  if (count < -1) new Array(count);
  const headers: Record<string, unknown> = {};
  for (let i = 0; i < count; i++) {
    const length = decoder.readVarInt();
    let name: string | null = null;
    if (length !== -1) {
      name = decoder.buffer.toString('utf8', decoder.offset, decoder.offset + length);
      decoder.offset += length;
    }
    const headerValue = decoder.readVarIntBytes();
    // kafkajs' merge, inherited members (`constructor`, `__proto__`) included: see wireHeaderValues.
    const prev = headers[name as string];
    const next =
      prev === undefined ? headerValue : Array.isArray(prev) ? prev.concat([headerValue]) : [prev, headerValue];
    // An object literal's computed key defines `__proto__` as an own property; an assignment would set the prototype.
    if (name === '__proto__')
      Object.defineProperty(headers, name, { value: next, enumerable: true, writable: true, configurable: true });
    else headers[name as string] = next;
  }
  return {
    magicByte,
    attributes,
    timestamp,
    offset,
    key,
    value,
    headers,
    isControlRecord: isControlBatch,
    batchContext,
  };
}

/** What kafkajs' produce request hands its record encoder: a message with its deltas in the batch. */
export interface RecordArgs {
  readonly offsetDelta?: unknown;
  readonly timestampDelta?: unknown;
  readonly key?: unknown;
  readonly value?: unknown;
  readonly headers?: unknown;
}

const zigzag = (n: number): number => ((n << 1) ^ (n >> 31)) >>> 0;
function varIntSize(n: number): number {
  let v = zigzag(n);
  let size = 1;
  while (v >= 0x80) {
    v >>>= 7;
    size++;
  }
  return size;
}
function putVarInt(buffer: Buffer, at: number, n: number): number {
  let v = zigzag(n);
  let offset = at;
  while (v >= 0x80) {
    buffer[offset++] = (v & 0x7f) | 0x80;
    v >>>= 7;
  }
  buffer[offset++] = v;
  return offset;
}
/** A varint-sized field: a string's UTF-8 bytes or a Buffer's; null and undefined are -1. */
const fieldSize = (field: string | Buffer | null | undefined): number => {
  if (field == null) return 1;
  const length = typeof field === 'string' ? Buffer.byteLength(field) : field.length;
  return varIntSize(length) + length;
};
function putField(buffer: Buffer, at: number, field: string | Buffer | null | undefined): number {
  if (field == null) return putVarInt(buffer, at, -1);
  if (typeof field === 'string') {
    const offset = putVarInt(buffer, at, Buffer.byteLength(field));
    return offset + buffer.write(field, offset, 'utf8');
  }
  const offset = putVarInt(buffer, at, field.length);
  return offset + field.copy(buffer, offset);
}
const plainField = (field: unknown): field is string | Buffer | null | undefined =>
  field == null || typeof field === 'string' || Buffer.isBuffer(field);
const smallInt = (n: unknown): n is number => Number.isInteger(n) && Math.abs(n as number) < 2 ** 30;

/**
 * A record's bytes as kafkajs' record encoder (`protocol/recordBatch/record/v0/index.js`) writes them, length
 * first, in one Buffer: kafkajs' own allocates a zeroed 512-byte `Encoder` per record and one more per header,
 * and copies each into the next (6 -> 1 us per record with busbar's two headers, Node 24). Only for the
 * shapes kafkajs' produce request makes of well-typed messages (strings and Buffers, small integer deltas);
 * undefined for anything else, which kafkajs' own encoder then handles (or fails on) as before.
 */
export function recordBytes(args: RecordArgs): Buffer | undefined {
  const { offsetDelta = 0, timestampDelta = 0, key, value, headers = {} } = args;
  if (!smallInt(offsetDelta) || !smallInt(timestampDelta) || !plainField(key) || !plainField(value)) return;
  if (headers === null || typeof headers !== 'object') return;
  const pairs: Array<string | Buffer> = [];
  for (const name of Object.keys(headers)) {
    const given = (headers as Record<string, unknown>)[name];
    for (const one of Array.isArray(given) ? given : [given]) {
      // kafkajs sizes a header value with Buffer.byteLength, which throws on null: its encoder says so.
      if (typeof one !== 'string' && !Buffer.isBuffer(one)) return;
      pairs.push(name, one);
    }
  }
  let body = 1 + varIntSize(timestampDelta) + varIntSize(offsetDelta) + fieldSize(key) + fieldSize(value);
  body += varIntSize(pairs.length / 2);
  for (const field of pairs) body += fieldSize(field);
  const buffer = Buffer.allocUnsafe(varIntSize(body) + body);
  let offset = putVarInt(buffer, 0, body);
  buffer[offset++] = 0; // attributes: none are used in a record
  offset = putVarInt(buffer, offset, timestampDelta);
  offset = putVarInt(buffer, offset, offsetDelta);
  offset = putField(buffer, offset, key);
  offset = putField(buffer, offset, value);
  offset = putVarInt(buffer, offset, pairs.length / 2);
  for (const field of pairs) offset = putField(buffer, offset, field);
  // The buffer is allocUnsafe: were a size ever off, its unwritten bytes must not go on the wire (kafkajs' own then).
  return offset === buffer.length ? buffer : undefined;
}
