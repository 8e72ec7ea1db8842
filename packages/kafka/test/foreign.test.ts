import {
  type Bus,
  codecs,
  connect,
  defineTopic,
  type Logger,
  MemoryIdempotencyStore,
  type Message,
  silentLogger,
} from '@busbar/core';
import { HEADER } from '@busbar/core/transport';
import { brokerAvailable, brokerUrls, collect, uniqueName } from '@busbar/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { driver, type KafkaRaw } from '../src/index.js';
import { nativeKafka, readRecords, stringHeaders } from './native-client.js';

const ok = await brokerAvailable('kafka');
const fast = { maxAttempts: 2, initialDelayMs: 50, maxDelayMs: 50 };

describe.runIf(ok)('kafka interop with plain kafkajs clients', () => {
  let bus: Bus;
  const producer = nativeKafka.producer();
  const warnings: string[] = [];
  const logger: Logger = { ...silentLogger, warn: (message) => warnings.push(message) };

  beforeAll(async () => {
    bus = await connect({ url: brokerUrls.kafka, driver, logger });
    await producer.connect();
  });
  afterAll(async () => {
    await producer.disconnect();
    await bus.close();
  });

  it('a binary (not UTF-8) key keeps its bytes through the retry, the dead letter and a re-drive', async () => {
    const topic = uniqueName('binkey');
    const group = uniqueName('g');
    const key = Buffer.from([0xff, 0x00, 0xfe, 0x41]);
    let fail = true;
    const attempts: number[] = [];
    await bus.subscribe(
      topic,
      (m) => {
        attempts.push(m.attempt);
        if (fail) throw new Error('fails');
      },
      { group, retry: fast },
    );
    await producer.send({ topic, messages: [{ key, value: '{"n":1}' }] });
    const [dead] = await readRecords(`${topic}.${group}.dlq`, 1);
    expect(Buffer.compare(dead?.key as Buffer, key)).toBe(0);
    const [retried] = await readRecords(`${topic}.${group}.retry`, 1);
    expect(Buffer.compare(retried?.key as Buffer, key)).toBe(0);
    fail = false;
    expect(await bus.redrive(topic, group)).toBe(1);
    const all = await readRecords(topic, 2);
    expect(Buffer.compare(all[1]?.key as Buffer, key)).toBe(0);
  });

  it('a native record reaches the handler with Kafka identity, key, headers, timestamp, and its content type applied', async () => {
    const topic = uniqueName('foreign');
    const got = collect<Message<unknown>>();
    await bus.subscribe(topic, async (m) => got.push(m), { group: uniqueName('g') });
    const [sent] = await producer.send({
      topic,
      messages: [
        { key: 'k', value: '{"a":1}', headers: { trace: 't1' }, timestamp: '1700000000000' },
        { key: 'k', value: 'hello', headers: { 'Content-Type': 'text/plain; charset=utf-8' } },
        { key: 'k', value: Buffer.from([0xff, 0x00, 0x7b]), headers: { 'content-type': 'application/octet-stream' } },
        { key: 'k', value: 'not json {' },
        { key: 'k', value: '{"v":2}', headers: { 'CONTENT-TYPE': 'application/vnd.example+json' } },
      ],
    });
    const items = await got.waitForCount(5, 20_000);
    const base = Number(sent?.baseOffset);
    expect(items.map((m) => m.id)).toEqual([0, 1, 2, 3, 4].map((i) => `${topic}-${sent?.partition}-${base + i}`));
    const [json, text, bytes, unlabelled, vendor] = items as Message<unknown>[] as [
      Message<unknown>,
      Message<unknown>,
      Message<unknown>,
      Message<unknown>,
      Message<unknown>,
    ];
    expect(json.payload).toEqual({ a: 1 });
    expect(json.key).toBe('k');
    expect(json.headers).toEqual({ trace: 't1' });
    expect(json.contentType).toBeUndefined();
    expect(json.timestamp.getTime()).toBe(1_700_000_000_000);
    expect((json.raw as KafkaRaw).tombstone).toBe(false);
    expect(text.payload).toBe('hello');
    expect(text.contentType).toBe('text/plain; charset=utf-8');
    expect(text.headers).toEqual({});
    expect(bytes.payload).toBeInstanceOf(Uint8Array);
    expect([...(bytes.payload as Uint8Array)]).toEqual([0xff, 0x00, 0x7b]);
    expect(bytes.contentType).toBe('application/octet-stream');
    expect(new TextDecoder().decode(unlabelled.payload as Uint8Array)).toBe('not json {');
    expect(vendor.payload).toEqual({ v: 2 });
  });

  it('equal bodies without a busbar id are both handled under idempotency (no made-up ids, no warning); a retry keeps the id', async () => {
    const topic = uniqueName('foreign-ids');
    const got = collect<Message<unknown>>();
    await bus.subscribe(
      topic,
      async (m) => {
        got.push(m);
        if (m.headers.fail === 'once' && m.attempt === 1) throw new Error('first attempt fails');
      },
      { group: uniqueName('g'), idempotency: { store: new MemoryIdempotencyStore() }, retry: fast },
    );
    warnings.length = 0;
    await producer.send({
      topic,
      messages: [
        { key: 'k', value: '{"same":true}' },
        { key: 'k', value: '{"same":true}' },
        { key: 'k', value: '{"same":true}', headers: { fail: 'once' } },
      ],
    });
    const items = await got.waitForCount(4, 20_000);
    expect(new Set(items.slice(0, 3).map((m) => m.id)).size).toBe(3);
    const retried = items.filter((m) => m.headers.fail === 'once');
    expect(retried.map((m) => m.attempt)).toEqual([1, 2]);
    expect(retried[1]?.id).toBe(retried[0]?.id);
    expect(warnings.filter((w) => w.includes('carry no id'))).toEqual([]);
  });

  it('a tombstone is a message with an empty body; its retry and its dead letter are tombstones too', async () => {
    const topic = uniqueName('tombstone');
    const group = uniqueName('g');
    const dlq = `${topic}.${group}.dlq`;
    const attempts = collect<Message<Uint8Array>>();
    const asJson = collect<Message<unknown>>();
    const deadLetters = collect<Message<unknown>>();
    await bus.subscribe(dlq, async (m) => deadLetters.push(m), { group: uniqueName('dlq-reader') });
    await bus.subscribe(
      defineTopic<Uint8Array>(topic, undefined, { codec: codecs.bytes }),
      async (m) => {
        attempts.push(m);
        throw new Error('cannot delete');
      },
      { group, retry: fast },
    );
    await bus.subscribe(topic, async (m) => asJson.push(m), { group: uniqueName('g') });
    // A content type on a tombstone is not applied: there is no content to decode.
    await producer.send({
      topic,
      messages: [{ key: 'gone', value: null, headers: { 'content-type': 'application/json' } }],
    });

    const tries = await attempts.waitForCount(2, 20_000);
    for (const m of tries) {
      expect(m.payload).toBeInstanceOf(Uint8Array);
      expect(m.payload.byteLength).toBe(0);
      expect(m.key).toBe('gone');
      expect(m.contentType).toBeUndefined();
      expect((m.raw as KafkaRaw).tombstone).toBe(true);
    }
    // On the default codec an empty body without a content type is no value: null (no DecodeError).
    const [plain] = (await asJson.waitForCount(1, 20_000)) as [Message<unknown>];
    expect(plain.payload).toBeNull();

    const [raw] = await readRecords(dlq, 1);
    expect(raw?.value).toBeNull();
    expect(raw?.key?.toString()).toBe('gone');
    const headers = stringHeaders(raw as NonNullable<typeof raw>);
    expect(headers['busbar-dl-topic']).toBe(topic);
    expect(Object.keys(headers).filter((h) => h === 'content-type' || h === HEADER.tombstone)).toEqual([]);
    // A plain busbar subscription on the dead-letter topic handles it (it is not dead-lettered again).
    const [dead] = (await deadLetters.waitForCount(1, 20_000)) as [Message<unknown>];
    expect(dead.deadLetter?.topic).toBe(topic);
    expect(dead.deadLetter?.attempts).toBe(2);
    expect((dead.raw as KafkaRaw).tombstone).toBe(true);
  });

  it("an undecodable foreign message's dead letter is labelled bytes and handled by a plain busbar subscription", async () => {
    const topic = uniqueName('undecodable');
    const group = uniqueName('g');
    const deadLetters = collect<Message<unknown>>();
    await bus.subscribe(`${topic}.${group}.dlq`, async (m) => deadLetters.push(m), { group: uniqueName('reader') });
    await bus.subscribe(topic, async () => undefined, { group });
    await producer.send({ topic, messages: [{ value: 'not json', headers: { 'content-type': 'application/json' } }] });
    const [dead] = await deadLetters.waitForCount(1, 20_000);
    expect(dead?.contentType).toBe('application/octet-stream');
    expect(new TextDecoder().decode(dead?.payload as Uint8Array)).toBe('not json');
    expect(dead?.deadLetter?.errorName).toContain('Decode');
  });

  it('a native consumer reads busbar messages: key, value, busbar-id, content-type and user headers, timestamp', async () => {
    const topic = uniqueName('to-native');
    const before = Date.now();
    const id = await bus.publish(topic, { a: 1 }, { key: 'k', headers: { h: 'v' } });
    const text = await bus.publish(defineTopic<string>(topic, undefined, { codec: codecs.string }), 'hi');
    const records = await readRecords(topic, 2);
    const json = records.find((r) => r.value?.toString() === '{"a":1}');
    expect(json?.key?.toString()).toBe('k');
    expect(stringHeaders(json as NonNullable<typeof json>)).toEqual({
      'busbar-id': id,
      'content-type': 'application/json',
      h: 'v',
    });
    expect(Number(json?.timestamp)).toBeGreaterThanOrEqual(before - 1_000);
    const plain = records.find((r) => r.value?.toString() === 'hi');
    expect(stringHeaders(plain as NonNullable<typeof plain>)).toMatchObject({
      'busbar-id': text,
      'content-type': 'text/plain; charset=utf-8',
    });
  });
});
