import type { OutgoingRecord } from '@busbar/core/transport';
import { describe, expect, it } from 'vitest';
import { toKafkaMessage } from '../src/codec.js';

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
    expect(m.headers).toEqual({ tenant: 'acme', 'busbar-due': '5', 'busbar-id': 'id-1' });
  });
});
