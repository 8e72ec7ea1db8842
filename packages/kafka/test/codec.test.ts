import type { OutgoingRecord } from '@busbar/core/transport';
import { HEADER } from '@busbar/core/transport';
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

  it("reads busbar 0.1's source-position headers (still in retry and dead-letter topics) under the registry's names", () => {
    const old = fromKafkaHeaders({ 'busbar-kafka-partition': Buffer.from('2'), 'busbar-kafka-offset': '41', a: 'b' });
    expect(old.headers).toEqual({ a: 'b', [HEADER.sourcePartition]: '2', [HEADER.sourceOffset]: '41' });
    // Both present (a 0.1 record re-failed under a newer busbar): the registry's name wins.
    const both = fromKafkaHeaders({ 'busbar-kafka-offset': '1', [HEADER.sourceOffset]: '7' });
    expect(both.headers).toEqual({ [HEADER.sourceOffset]: '7' });
  });

  it('reads the content type from a content-type header in any case, not as a header', () => {
    const { headers, contentType } = fromKafkaHeaders({ 'Content-Type': Buffer.from('text/plain'), a: 'b' });
    expect(contentType).toBe('text/plain');
    expect(headers).toEqual({ a: 'b' });
  });

  it('writes a null value for a marked tombstone and for an empty body labelled JSON (a re-driven tombstone), never for other empty bodies', () => {
    const empty = (contentType: string, headers: Record<string, string> = {}): OutgoingRecord => ({
      ...record(0),
      body: new Uint8Array(0),
      contentType,
      headers,
    });
    const marked = toKafkaMessage(empty('text/plain', { [HEADER.tombstone]: '1', a: 'b' }), undefined, 0);
    expect(marked.value).toBeNull();
    expect(marked.headers).toEqual({ a: 'b', 'busbar-id': 'id-1' });
    expect(toKafkaMessage(empty('application/json; charset=utf-8'), undefined, 0).value).toBeNull();
    expect(toKafkaMessage(empty('application/vnd.x+json'), undefined, 0).value).toBeNull();
    const text = toKafkaMessage(empty('text/plain; charset=utf-8'), undefined, 0);
    expect(text.value).toEqual(Buffer.alloc(0));
    expect(text.headers?.['content-type']).toBe('text/plain; charset=utf-8');
  });

  it("keys a record without a key by its CloudEvent's partitionkey extension (Kafka binding 3.1)", () => {
    const event = { ...record(0), key: undefined, headers: { ce_partitionkey: 'order-7' } };
    expect(toKafkaMessage(event, undefined, 0).key).toBe('order-7');
    expect(toKafkaMessage({ ...event, key: 'own' }, undefined, 0).key).toBe('own');
  });
});
