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

describe('redis entry fields (foreign shapes and headers as fields)', () => {
  const decode = (fields: (string | Buffer)[]) => decodeEntry('7-0', roundTrip(fields));
  const text = (body: Uint8Array) => Buffer.from(body).toString();

  it('writes headers one field each (CloudEvents attributes bare) and reads them back, with the content type', () => {
    const fields: (string | Buffer | number)[] = [];
    const headers = { 'ce-id': 'e1', 'x-trace': 't', 'busbar-attempt': '3', empty: '', 'h:odd': 'v', body: 'b' };
    pushEntryFields(fields, record({ headers, contentType: 'text/plain', key: 'k' }), 0);
    const names = fields.filter((_, i) => i % 2 === 0);
    expect(names).toEqual([
      'body',
      'id',
      'content-type',
      'key',
      'ce-id',
      'h:x-trace',
      'h:busbar-attempt',
      'h:empty',
      'h:h:odd',
      'h:body',
    ]);
    const back = decodeEntry('1-0', roundTrip(fields));
    expect(back.headers).toEqual(headers);
    expect(back).toMatchObject({ id: 'id-1', key: 'k', contentType: 'text/plain', baseAttempt: 3 });
  });

  it('reads content-type in any case and ct; neither is a header', () => {
    expect(decode(['data', 'x', 'Content-Type', 'text/plain']).contentType).toBe('text/plain');
    expect(decode(['data', 'x', 'CONTENT-TYPE', 'text/csv']).contentType).toBe('text/csv');
    expect(decode(['data', 'x', 'ct', 'text/html']).contentType).toBe('text/html');
    expect(decode(['data', 'x', 'ct', 'text/html']).headers).toEqual({});
  });

  it('takes ce- and ce_ fields in any case as headers, h: fields by their name, and merges the h JSON field', () => {
    const entry = decode(['CE-Id', '1', 'ce_type', 't', 'h:a', '1', 'h', '{"b":2}', 'h:a', '3', 'data', 'x']);
    expect(entry.headers).toEqual({ 'CE-Id': '1', ce_type: 't', a: '1, 3', b: '2' });
    expect(text(entry.body)).toBe('x');
  });

  it('picks the body: body first, else a lone data/payload/message/value field, else an object', () => {
    expect(text(decode(['body', 'b', 'data', 'd']).body)).toBe('b');
    for (const name of ['data', 'payload', 'message', 'value']) {
      const entry = decode([name, 'v', 'id', 'i-1', 'h:x', 'y']);
      expect(text(entry.body)).toBe('v');
      expect(entry.contentType).toBeUndefined();
    }
    // Two body-like fields, or one with another name: all data fields (id/key/ts too) as a JSON object.
    const both = decode(['data', 'd', 'payload', 'p', 'id', 'i-2', 'ct', 'text/plain', 'h:x', 'y']);
    expect(JSON.parse(text(both.body))).toEqual({ data: 'd', payload: 'p', id: 'i-2' });
    expect(both).toMatchObject({ id: 'i-2', contentType: 'application/json', headers: { x: 'y' } });
    expect(JSON.parse(text(decode(['Data', 'x']).body))).toEqual({ Data: 'x' });
    const bytes = decode(['raw', Buffer.from([0xff, 0xfe]), 'r', 'not a retry']);
    expect(JSON.parse(text(bytes.body))).toEqual({ raw: '//4=', r: 'not a retry' });
    // Nothing but headers: an empty body.
    expect(decode(['h:x', '1']).body.byteLength).toBe(0);
  });

  it('keeps the JSON content type of entries in the format before (body and id, no content type)', () => {
    expect(decode(['body', '{"a":1}', 'id', 'x']).contentType).toBe('application/json');
    // Not JSON: no claim, so the bytes reach the handler instead of a DecodeError.
    expect(decode(['body', 'plain', 'id', 'x']).contentType).toBeUndefined();
    expect(decode(['body', '{"a":1}']).contentType).toBeUndefined();
  });

  it('a retry payload with an unusable id keeps the source entry id', () => {
    const r = JSON.stringify({ i: '', h: {}, a: 2, b: 'IngiIg==', s: '5-1', t: 1 });
    expect(decode(['r', r])).toMatchObject({ id: '5-1', baseAttempt: 2 });
  });
});
