import type { OutgoingRecord } from '@busbar/core/transport';
import { describe, expect, it } from 'vitest';
import { fromKafkaHeaders, toKafkaMessage } from '../src/codec.js';

const record = (timestamp: number): OutgoingRecord => ({
  topic: 't',
  id: 'id-1',
  key: 'k',
  headers: { tenant: 'acme' },
  body: Buffer.from('{}'),
  contentType: 'application/json',
  timestamp,
});

describe('kafka record codec', () => {
  it('leaves a fresh record to the send time and keeps the time of a stale one (dead letter, re-drive)', () => {
    const now = Date.now();
    expect(toKafkaMessage(record(now - 10), undefined, now).timestamp).toBeUndefined();
    expect(toKafkaMessage(record(now - 60_000), undefined, now).timestamp).toBe(String(now - 60_000));
  });

  it('carries the id, the key and the headers', () => {
    const m = toKafkaMessage(record(0), { 'busbar-due': '5' }, 0);
    expect(m.key).toBe('k');
    expect(m.headers).toEqual({
      tenant: 'acme',
      'busbar-due': '5',
      'busbar-id': 'id-1',
      'content-type': 'application/json',
    });
  });

  it("reads headers named like Object.prototype members as ordinary headers (kafkajs' merge starts them with the inherited value)", () => {
    // What kafkajs' decoder builds for the wire headers constructor=c, __proto__=p, __proto__=q, toString=null.
    const raw = Object.defineProperties(
      {},
      {
        constructor: { value: [Object, Buffer.from('c')], enumerable: true },
        ['__proto__']: { value: [Object.prototype, Buffer.from('p'), Buffer.from('q')], enumerable: true },
        toString: { value: [Object.prototype.toString, null], enumerable: true },
      },
    );
    const { headers, raw: clean, contentType } = fromKafkaHeaders(raw as never);
    expect(contentType).toBeUndefined();
    expect(Object.getPrototypeOf(headers)).toBe(Object.prototype);
    expect(Object.entries(headers)).toEqual([
      ['constructor', 'c'],
      ['__proto__', 'p, q'],
      ['toString', ''],
    ]);
    expect(clean.constructor).toEqual([Buffer.from('c')]);
  });

  it('reads the content type from a content-type header in any case, not as a header', () => {
    const { headers, contentType } = fromKafkaHeaders({ 'Content-Type': Buffer.from('text/plain'), a: 'b' });
    expect(contentType).toBe('text/plain');
    expect(headers).toEqual({ a: 'b' });
  });
});
