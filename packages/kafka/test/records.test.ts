import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import { isDeepStrictEqual } from 'node:util';
import { describe, expect, it } from 'vitest';
import { fastRecordDecoding, fastRecordEncoding } from '../src/internals.js';
import {
  decodeRecord,
  type RecordArgs,
  type RecordBatchContext,
  type RecordReader,
  recordBytes,
} from '../src/records.js';

const require = createRequire(import.meta.url);
type Decode = (decoder: RecordReader, context?: RecordBatchContext) => Record<string, unknown>;
const Decoder = require('kafkajs/src/protocol/decoder.js') as new (buffer: Buffer) => RecordReader;
/** A kafkajs module as busbar left it in the cache, and kafkajs' own: its file loaded once more, outside that slot. */
function both<T>(module: string): { installed: T; original: T } {
  const file = require.resolve(`kafkajs/src/${module}`);
  const installed = require(file) as T;
  const ours = require.cache[file];
  delete require.cache[file];
  try {
    return { installed, original: require(file) as T };
  } finally {
    if (ours) require.cache[file] = ours;
  }
}
const { installed, original } = both<Decode>('protocol/recordBatch/record/v0/decoder.js');
type Encode = (args: RecordArgs) => { buffer: Buffer };
const encoders = both<Encode>('protocol/recordBatch/record/v0/index.js');

// A record's bytes as the protocol has them (after its length): zigzag varints, varlong timestamp delta.
const zigzag = (n: bigint) => (n << 1n) ^ (n >> 63n);
function varint(n: number | bigint): number[] {
  let v = BigInt.asUintN(64, zigzag(BigInt(n)));
  const out: number[] = [];
  do {
    const byte = Number(v & 0x7fn);
    v >>= 7n;
    out.push(v > 0n ? byte | 0x80 : byte);
  } while (v > 0n);
  return out;
}
const bytes = (b: Buffer | null) => (b === null ? varint(-1) : [...varint(b.length), ...b]);
interface Spec {
  timestampDelta: bigint;
  offsetDelta: number;
  key: Buffer | null;
  value: Buffer | null;
  headers: Array<[string | null, Buffer | null]>;
  count?: number;
}
function record(s: Spec): Buffer {
  const headers = s.headers.flatMap(([name, value]) => [
    ...(name === null ? varint(-1) : bytes(Buffer.from(name))),
    ...bytes(value),
  ]);
  return Buffer.from([
    0,
    ...varint(s.timestampDelta),
    ...varint(s.offsetDelta),
    ...bytes(s.key),
    ...bytes(s.value),
    ...varint(s.count ?? s.headers.length),
    ...headers,
  ]);
}

const context = (over: Partial<RecordBatchContext> = {}): RecordBatchContext => ({
  firstOffset: '1000',
  firstTimestamp: '1765100000000',
  maxTimestamp: '1765100000999',
  timestampType: 0,
  magicByte: 2,
  isControlBatch: false,
  ...over,
});

/** Both decoders on the same bytes: the same record (inherited header artifacts included), the same end, or the same error. */
function same(buffer: Buffer, ctx: RecordBatchContext): void {
  const run = (decode: Decode) => {
    const decoder = new Decoder(buffer);
    try {
      return { record: decode(decoder, ctx), offset: decoder.offset };
    } catch (error) {
      return { error: `${(error as Error).name}: ${(error as Error).message}` };
    }
  };
  const theirs = run(original);
  const ours = run(decodeRecord);
  if (!isDeepStrictEqual(ours, theirs)) expect(ours).toEqual(theirs);
  const headers = (r: typeof ours) => ('record' in r ? (r.record?.headers as object) : undefined);
  if (headers(theirs)) {
    expect(Object.getPrototypeOf(headers(ours))).toBe(Object.getPrototypeOf(headers(theirs)));
    expect(Reflect.ownKeys(headers(ours) as object)).toEqual(Reflect.ownKeys(headers(theirs) as object));
  }
}

const NAMES = ['busbar-id', 'content-type', 'a', '', 'é', '__proto__', 'constructor', 'toString', 'null', null];
const pick = <T>(list: readonly T[]): T => list[Math.floor(Math.random() * list.length)] as T;
const maybe = (n: number): Buffer | null => (Math.random() < 0.1 ? null : randomBytes(n));

describe("kafkajs internals: busbar's record decoder and encoder", () => {
  it("is what kafkajs' batch decoder calls, in every client of the process", () => {
    expect(fastRecordDecoding).toBe(true);
    expect(installed).not.toBe(original);
    const ctx = context();
    const buffer = record({ timestampDelta: 3n, offsetDelta: 7, key: null, value: Buffer.from('v'), headers: [] });
    expect(installed(new Decoder(buffer), ctx)).toEqual(original(new Decoder(buffer), ctx));
  });

  it('decodes 2,000 random records as kafkajs does: headers (repeated, null, inherited names), offsets, timestamps', () => {
    const contexts = [
      context(),
      context({ firstOffset: '9007199254740990', firstTimestamp: '-1' }), // offsets past 2^53: BigInt
      context({ firstOffset: '0', firstTimestamp: '9223372036854775000' }),
      context({ timestampType: 1 }), // LogAppendTime: the batch's max timestamp
      context({ timestampType: 1, maxTimestamp: '' }),
      context({ isControlBatch: true, magicByte: 2 }),
    ];
    for (let i = 0; i < 2_000; i++) {
      const headers = Array.from({ length: Math.floor(Math.random() * 5) }, () => {
        const name = pick(NAMES);
        return [name, maybe(Math.floor(Math.random() * 40))] as [string | null, Buffer | null];
      });
      const timestampDelta = pick([0n, 1n, -1n, 63n, -64n, 64n, 5_000n, -123_456_789n, 2n ** 62n, -(2n ** 63n)]);
      const offsetDelta = pick([0, 1, 63, 64, 1_000, 2 ** 31 - 1, -5]);
      const buffer = record({ timestampDelta, offsetDelta, key: maybe(8), value: maybe(64), headers });
      same(buffer, pick(contexts));
    }
  });

  it('fails like kafkajs on corrupt records: truncated, a negative header count, a name longer than the record', () => {
    const ctx = context();
    const full = record({
      timestampDelta: 2n,
      offsetDelta: 1,
      key: Buffer.from('k'),
      value: Buffer.from('value'),
      headers: [['busbar-id', Buffer.from('x')]],
    });
    for (let cut = 0; cut < full.length; cut++) same(full.subarray(0, cut), ctx);
    same(record({ timestampDelta: 0n, offsetDelta: 0, key: null, value: null, headers: [], count: -1 }), ctx);
    same(record({ timestampDelta: 0n, offsetDelta: 0, key: null, value: null, headers: [], count: -3 }), ctx);
    const long = Buffer.from([0, 0, 0, 0, 0, ...varint(1), ...varint(50), 0x61, 0x62]);
    same(long, ctx);
    // A varlong of 10 bytes: kafkajs' own error.
    same(Buffer.from([0, ...Array(10).fill(0xff), 0x01, 0, 0, 0, 0]), ctx);
  });

  it("encodes 2,000 random records byte for byte as kafkajs does, and leaves every other shape to kafkajs' own", () => {
    expect(fastRecordEncoding).toBe(true);
    expect(encoders.installed).not.toBe(encoders.original);
    const run = (encode: Encode, args: RecordArgs) => {
      try {
        return { bytes: encode(args).buffer.toString('hex') };
      } catch (error) {
        return { error: `${(error as Error).name}: ${(error as Error).message}` };
      }
    };
    const text = () => pick(['', 'a', 'é€😀', '\u0000\r\n', '\ud800', 'x'.repeat(200)]);
    const field = () => pick([null, undefined, text(), randomBytes(Math.floor(Math.random() * 300))]);
    for (let i = 0; i < 2_000; i++) {
      const headers: Record<string, unknown> = {};
      for (let h = Math.floor(Math.random() * 4); h > 0; h--) {
        const value = () => pick([text(), randomBytes(16)]);
        headers[pick(['busbar-id', 'content-type', 'é', '', '__proto__', 'k'])] =
          Math.random() < 0.2 ? [value(), value()] : value();
      }
      const args: RecordArgs = {
        offsetDelta: pick([0, 1, 63, 64, 8191, 8192, 2 ** 20]),
        timestampDelta: pick([0, 1, -1, 63, -64, 64, 123_456, -987_654]),
        key: field(),
        value: field(),
        headers,
      };
      expect(run(encoders.installed, args)).toEqual(run(encoders.original, args));
      if (i < 50) expect(recordBytes(args)).toBeDefined();
    }
    // Shapes the fast path does not take: kafkajs' own result, its error included.
    const odd: RecordArgs[] = [
      { key: null, value: 'v', headers: { a: null } }, // kafkajs throws sizing a null header value
      { key: null, value: 'v', headers: { a: [Buffer.from('x'), undefined] } },
      { key: 42, value: 'v' },
      { key: null, value: new Uint8Array([1, 2]) },
      { key: null, value: 'v', timestampDelta: 2 ** 40 },
      { key: null, value: 'v', timestampDelta: Number.NaN },
      { key: null, value: 'v', headers: null },
    ];
    for (const args of odd) {
      expect(recordBytes(args)).toBeUndefined();
      expect(run(encoders.installed, args)).toEqual(run(encoders.original, args));
    }
    // Nothing given: kafkajs' defaults (an empty record).
    expect(run(encoders.installed, {})).toEqual(run(encoders.original, {}));
  });

  // Node's require cache is per process: each load order in a fresh one (the built package, as users get it).
  const internals = fileURLToPath(new URL('../dist/internals.js', import.meta.url));
  const inChild = (script: string): unknown =>
    JSON.parse(execFileSync(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8' }));
  const load = `const m = await import(${JSON.stringify(internals)}); console.log([m.fastRecordDecoding, m.fastRecordEncoding]);`;
  const req = `import { createRequire } from 'node:module'; const r = createRequire(${JSON.stringify(internals)});`;

  it('installed before a first fetch and send, even when the application loaded kafkajs first; not after them', () => {
    expect(inChild(load)).toEqual([true, true]);
    expect(inChild(`${req} r('kafkajs'); ${load}`)).toEqual([true, true]);
    expect(inChild(`${req} r('kafkajs/src/protocol/recordBatch/v0/decoder.js'); ${load}`)).toEqual([false, true]);
    expect(inChild(`${req} r('kafkajs/src/protocol/requests/produce/v3/request.js'); ${load}`)).toEqual([true, false]);
  });
});
