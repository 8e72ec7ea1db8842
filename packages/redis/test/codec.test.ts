import type { OutgoingRecord } from '@busbar/core/transport';
import { describe, expect, it } from 'vitest';
import { decodeEntry, pushEntryFields } from '../src/codec.js';

const record = (over: Partial<OutgoingRecord>): OutgoingRecord => ({
  topic: 't',
  id: 'id-1',
  key: undefined,
  headers: {},
  body: Buffer.from('{"n":1}'),
  contentType: 'application/json',
  timestamp: Date.now(),
  ...over,
});

/** The fields as Redis hands them back to a Buffer reader. */
function roundTrip(fields: (string | Buffer | number)[]): Buffer[] {
  return fields.map((f) => (Buffer.isBuffer(f) ? f : Buffer.from(String(f))));
}

describe('redis entry codec', () => {
  it('keeps the publish time of a record older than a second (dead letter, re-drive, outbox row)', () => {
    const old = Date.now() - 60_000;
    const fields: (string | Buffer | number)[] = [];
    pushEntryFields(fields, record({ timestamp: old }), Date.now());
    expect(fields).toContain('ts');
    expect(decodeEntry('1700000000000-0', roundTrip(fields)).timestamp).toBe(old);
  });

  it('reads a fresh record time from its entry id', () => {
    const fields: (string | Buffer | number)[] = [];
    pushEntryFields(fields, record({}), Date.now());
    expect(fields).not.toContain('ts');
    expect(decodeEntry('1700000000123-4', roundTrip(fields)).timestamp).toBe(1700000000123);
  });

  it('sends UTF-8 bodies as strings and other bytes as Buffers, both byte for byte', () => {
    const text: (string | Buffer | number)[] = [];
    pushEntryFields(text, record({ body: Buffer.from('héllo'), contentType: 'application/octet-stream' }), 0);
    expect(typeof text[1]).toBe('string');
    const binary: (string | Buffer | number)[] = [];
    const bytes = Buffer.from([0xff, 0x00, 0xc3]);
    pushEntryFields(binary, record({ body: bytes, contentType: 'application/octet-stream' }), 0);
    expect(Buffer.isBuffer(binary[1])).toBe(true);
    expect(Buffer.from(decodeEntry('1-0', roundTrip(binary)).body)).toEqual(bytes);
    expect(Buffer.from(decodeEntry('1-0', roundTrip(text)).body).toString()).toBe('héllo');
  });

  it('reads only the fields it knows, by their exact names', () => {
    const entry = decodeEntry('5-0', roundTrip(['bodx', 'no', 'body', 'yes', 'idd', 'x', 'id', 'm-1', 'ts', '12ab']));
    expect(Buffer.from(entry.body).toString()).toBe('yes');
    expect(entry.id).toBe('m-1');
    // A malformed ts falls back to the entry id's time.
    expect(entry.timestamp).toBe(5);
  });
});
