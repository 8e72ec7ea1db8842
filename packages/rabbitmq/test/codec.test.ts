import { brotliCompressSync, deflateSync, gzipSync } from 'node:zlib';
import type { ConsumeMessage } from 'amqplib';
import { describe, expect, it } from 'vitest';
import { MAX_INFLATED_BYTES, publishOptions, readMessage } from '../src/codec.js';
import { topologyMismatch } from '../src/errors.js';
import { DEFAULT_RETRY_BUCKETS, rabbitmqOptions } from '../src/options.js';
import { retryBucket, retryQueueExpiry } from '../src/topology.js';

const settings = { mandatory: false, topicHeader: false, expiration: undefined, priorityHeader: undefined };

function delivered(
  headers: Record<string, unknown>,
  redelivered = false,
  extra: Record<string, unknown> = {},
): ConsumeMessage {
  return {
    content: Buffer.from('{}'),
    fields: { deliveryTag: 1, redelivered, exchange: 'busbar', routingKey: 'a.b', consumerTag: 'c' },
    properties: { headers, messageId: 'id-1', timestamp: 1_700_000_000, ...extra },
  } as unknown as ConsumeMessage;
}

describe('rabbitmq codec', () => {
  it('maps a record onto persistent AMQP properties; key only as a header when set', () => {
    const record = {
      topic: 'a.b',
      id: 'id-1',
      key: undefined,
      headers: { tenant: 'acme' },
      body: new Uint8Array([1]),
      contentType: 'application/json',
      timestamp: 1_700_000_000_123,
    };
    const plain = publishOptions(record, settings);
    expect(plain).toMatchObject({
      deliveryMode: 2,
      messageId: 'id-1',
      timestamp: 1_700_000_000,
      contentType: 'application/json',
    });
    expect(plain.headers).toBe(record.headers);
    expect(publishOptions({ ...record, headers: {} }, settings).headers).toBeUndefined();
    expect(publishOptions({ ...record, key: 'k' }, settings).headers).toEqual({ tenant: 'acme', 'busbar-key': 'k' });
    expect(publishOptions(record, { ...settings, priorityHeader: 'tenant' }).priority).toBeUndefined();
    expect(publishOptions({ ...record, headers: { p: '7' } }, { ...settings, priorityHeader: 'p' }).priority).toBe(7);
  });

  it('never carries a stale busbar-topic into a normal publish', () => {
    const record = {
      topic: 'x.dlq',
      id: 'i',
      key: undefined,
      headers: { 'busbar-topic': 'x', keep: '1' },
      body: new Uint8Array(),
      contentType: 'text/plain',
      timestamp: 0,
    };
    expect(publishOptions(record, settings).headers).toEqual({ keep: '1' });
  });

  it('reads the attempt from busbar-attempt plus the broker delivery count or redelivered flag', () => {
    expect(readMessage(delivered({})).attempt).toBe(1);
    expect(readMessage(delivered({}, true)).attempt).toBe(2);
    expect(readMessage(delivered({ 'x-delivery-count': 3 }, true)).attempt).toBe(4);
    expect(readMessage(delivered({ 'busbar-attempt': '3' })).attempt).toBe(3);
    expect(readMessage(delivered({ 'busbar-attempt': '3', 'x-delivery-count': 1 }, true)).attempt).toBe(4);
  });

  it('keeps string headers, drops broker bookkeeping, reads topic/key/timestamp', () => {
    const m = readMessage(
      delivered({ a: 'x', n: 5, b: Buffer.from('y'), 'x-death': [{}], 'busbar-topic': 'orig', 'busbar-key': 'k' }),
    );
    expect(m.headers).toEqual({ a: 'x', n: '5', b: 'y', 'busbar-topic': 'orig', 'busbar-key': 'k' });
    expect(m.topic).toBe('orig');
    expect(m.key).toBe('k');
    expect(m.timestamp).toBe(1_700_000_000_000);
    expect(m.id).toBe('id-1');
  });

  it('makes up a random id (not a hash of the body) for messages without a usable messageId', () => {
    const a = readMessage(delivered({}, false, { messageId: undefined }));
    const b = readMessage(delivered({}, false, { messageId: '' }));
    expect(a.id).toMatch(/^[0-9a-f-]{36}$/);
    expect(b.id).not.toBe(a.id);
    expect(a.idGenerated && b.idGenerated).toBe(true);
    expect(readMessage(delivered({})).idGenerated).toBe(false);
  });

  it("reads amqplib's typed timestamps and decimals as ISO time and decimal text", () => {
    const m = readMessage(
      delivered({
        at: { '!': 'timestamp', value: 1_700_000_000 },
        far: { '!': 'timestamp', value: 2 ** 62 },
        d1: { '!': 'decimal', value: { places: 2, digits: 5 } },
        d2: { '!': 'decimal', value: { places: 0, digits: 42 } },
        list: [{ '!': 'decimal', value: { places: 1, digits: 15 } }, 'x'],
      }),
    );
    expect(m.headers).toEqual({
      at: '2023-11-14T22:13:20.000Z',
      far: String(2 ** 62),
      d1: '0.05',
      d2: '42',
      list: '1.5, x',
    });
  });

  it('inflates gzip / deflate / br bodies; an unknown encoding is bytes as they came', () => {
    const json = Buffer.from('{"a":1}');
    const read = (content: Buffer, contentEncoding: string) =>
      readMessage({ ...delivered({}, false, { contentType: 'application/json', contentEncoding }), content });
    for (const [encoding, body] of [
      ['gzip', gzipSync(json)],
      ['deflate', deflateSync(json)],
      ['br', brotliCompressSync(json)],
      ['identity', json],
    ] as const) {
      const m = read(body, encoding);
      expect(Buffer.from(m.body).toString()).toBe('{"a":1}');
      expect(m.contentType).toBe('application/json');
    }
    const odd = read(json, 'compress');
    expect(Buffer.from(odd.body).toString()).toBe('{"a":1}');
    expect(odd.contentType).toBe('application/octet-stream');
    // A zip bomb stops at the bound: bytes as they came.
    const bomb = gzipSync(Buffer.alloc(MAX_INFLATED_BYTES + 1));
    const big = read(bomb, 'gzip');
    expect(big.body.byteLength).toBe(bomb.byteLength);
    expect(big.contentType).toBe('application/octet-stream');
  });

  it('lets a retry queue expire only long after its messages', () => {
    const options = rabbitmqOptions.parse({ queueExpiresMs: 60_000 });
    expect(retryQueueExpiry(100, options)).toBe(60_200);
    expect(retryQueueExpiry(3_600_000, options)).toBe(7_260_000);
    expect(retryQueueExpiry(100, rabbitmqOptions.parse({}))).toBeUndefined();
  });

  it('rounds retry delays up to a bucket', () => {
    expect(retryBucket(1, DEFAULT_RETRY_BUCKETS)).toBe(10);
    expect(retryBucket(200, DEFAULT_RETRY_BUCKETS)).toBe(200);
    expect(retryBucket(201, DEFAULT_RETRY_BUCKETS)).toBe(300);
    expect(retryBucket(30_001, DEFAULT_RETRY_BUCKETS)).toBe(50_000);
    expect(retryBucket(1e12, DEFAULT_RETRY_BUCKETS)).toBe(Math.max(...DEFAULT_RETRY_BUCKETS));
    for (let i = 1; i < DEFAULT_RETRY_BUCKETS.length; i++) {
      expect((DEFAULT_RETRY_BUCKETS[i] as number) / (DEFAULT_RETRY_BUCKETS[i - 1] as number)).toBeLessThanOrEqual(2);
    }
  });
});

describe('topologyMismatch (RabbitMQ close reasons)', () => {
  it('names the exchange or queue and the differing argument', () => {
    const reason =
      "Operation failed: QueueDeclare; 406 (PRECONDITION-FAILED) with message \"PRECONDITION_FAILED - inequivalent arg 'x-queue-type' for queue 'orders.it's' in vhost '/': received the value 'quorum' of type 'longstr' but current is none\"";
    const text = topologyMismatch(reason);
    expect(text).toContain("queue 'orders.it's'");
    expect(text).toContain(
      "argument 'x-queue-type' differs (received the value 'quorum' of type 'longstr' but current is none)",
    );
    expect(topologyMismatch("NOT_FOUND - no exchange 'x' in vhost '/'")).toBe(
      "exchange 'x' does not exist (NOT_FOUND)",
    );
    expect(topologyMismatch('CHANNEL_ERROR - something else')).toBeUndefined();
  });
});
