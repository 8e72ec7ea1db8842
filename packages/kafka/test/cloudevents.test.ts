import { type Bus, connect, type Message, silentLogger } from '@busbar/core';
import { brokerAvailable, brokerUrls, collect, uniqueName } from '@busbar/testing';
import { CloudEvent, Kafka as CloudEventsKafka, type KafkaMessage } from 'cloudevents';
import type { IHeaders } from 'kafkajs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { driver } from '../src/index.js';
import { nativeKafka, readRecords, stringHeaders } from './native-client.js';

const ok = await brokerAvailable('kafka');

/** The SDK's Kafka message as kafkajs sends it: a JSON value serialised, headers as strings. */
function toKafkajs(message: { key?: unknown; value: unknown; headers: Record<string, unknown>; timestamp?: string }) {
  const headers: IHeaders = {};
  for (const [name, value] of Object.entries(message.headers)) if (value !== undefined) headers[name] = String(value);
  const value =
    typeof message.value === 'string' || Buffer.isBuffer(message.value) ? message.value : JSON.stringify(message.value);
  return {
    key: typeof message.key === 'string' ? message.key : null,
    value,
    headers,
    ...(message.timestamp ? { timestamp: message.timestamp } : {}),
  };
}

describe.runIf(ok)('kafka CloudEvents (Kafka protocol binding, with the official SDK)', () => {
  let bus: Bus;
  const producer = nativeKafka.producer();

  beforeAll(async () => {
    bus = await connect({ url: brokerUrls.kafka, driver, logger: silentLogger });
    await producer.connect();
  });
  afterAll(async () => {
    await producer.disconnect();
    await bus.close();
  });

  it('SDK events in binary and structured mode reach busbar with their id, type, source, key and data', async () => {
    const topic = uniqueName('ce-in');
    const got = collect<Message<unknown>>();
    await bus.subscribe(topic, async (m) => got.push(m), { group: uniqueName('g') });
    const binary = new CloudEvent({
      type: 'com.example.order.created',
      source: '/orders',
      subject: 'order-1',
      datacontenttype: 'application/json',
      data: { order: 1 },
      partitionkey: 'order-1',
      region: 'eu',
    });
    const structured = new CloudEvent({
      type: 'com.example.order.shipped',
      source: '/shipping',
      datacontenttype: 'application/json',
      data: { order: 2 },
      partitionkey: 'order-2',
    });
    await producer.send({ topic, messages: [toKafkajs(CloudEventsKafka.binary(binary))] });
    await producer.send({ topic, messages: [toKafkajs(CloudEventsKafka.structured(structured))] });
    const items = await got.waitForCount(2, 20_000);
    const first = items.find((m) => m.cloudEvent?.id === binary.id) as Message<unknown>;
    expect(first.id).toBe(binary.id);
    expect(first.key).toBe('order-1');
    expect(first.payload).toEqual({ order: 1 });
    expect(first.contentType).toBe('application/json');
    expect(first.cloudEvent).toMatchObject({
      specversion: '1.0',
      type: 'com.example.order.created',
      source: '/orders',
      subject: 'order-1',
      datacontenttype: 'application/json',
    });
    expect(first.cloudEvent?.extensions).toMatchObject({ region: 'eu', partitionkey: 'order-1' });
    const second = items.find((m) => m.cloudEvent?.id === structured.id) as Message<unknown>;
    expect(second.id).toBe(structured.id);
    expect(second.key).toBe('order-2');
    expect(second.payload).toEqual({ order: 2 });
    expect(second.cloudEvent).toMatchObject({ type: 'com.example.order.shipped', source: '/shipping' });
  });

  it('a busbar CloudEvent publish is parsed by the SDK from a plain kafkajs record (binary mode, ce_ headers)', async () => {
    const topic = uniqueName('ce-out');
    const id = await bus.publish(
      topic,
      { order: 3 },
      { cloudEvent: { type: 'com.example.order.paid', source: '/payments', extensions: { partitionkey: 'order-3' } } },
    );
    const [record] = await readRecords(topic, 1);
    const headers = stringHeaders(record as NonNullable<typeof record>);
    expect(headers).toMatchObject({
      ce_specversion: '1.0',
      ce_id: id,
      ce_type: 'com.example.order.paid',
      ce_source: '/payments',
      'content-type': 'application/json',
    });
    // The binding maps the partitionkey extension to the record key.
    expect(record?.key?.toString()).toBe('order-3');
    const message: KafkaMessage<Buffer | null | undefined> = {
      headers,
      key: record?.key?.toString() ?? '',
      value: record?.value,
      body: record?.value,
      timestamp: record?.timestamp,
    };
    const event = CloudEventsKafka.toEvent(message) as CloudEvent<unknown>;
    expect(event.id).toBe(id);
    expect(event.type).toBe('com.example.order.paid');
    expect(event.source).toBe('/payments');
    expect(event.specversion).toBe('1.0');
    expect(event.datacontenttype).toBe('application/json');
    expect(event.data).toEqual({ order: 3 });
    expect(typeof event.time).toBe('string');
  });
});
