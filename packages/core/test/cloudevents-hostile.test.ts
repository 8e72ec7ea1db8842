import { BusbarError, defineTopic, type Message } from '@busbar/core';
import { uniqueName, waitFor } from '@busbar/testing';
import { describe, expect, it } from 'vitest';
import { memoryBuses } from './helpers.js';

/** Writing a CloudEvent from JavaScript that does not follow the types: a typed error, nothing sent. */

const memory = memoryBuses('ceh');

async function refused(publish: () => Promise<unknown>, code: string): Promise<BusbarError> {
  const error = await publish().then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(BusbarError.is(error), String(error)).toBe(true);
  expect((error as BusbarError).code).toBe(code);
  expect((error as BusbarError).retryable).toBe(false);
  return error as BusbarError;
}

describe('CloudEvent options that are not what the types say', () => {
  const base = { type: 'com.example.t', source: '/s' };

  it.each<[string, unknown]>([
    // Before: spread into attributes named after the indexes (`ce-0: a`, `ce-1: b`, ...).
    ['a string', 'abc'],
    ['an array', ['x', 'y']],
    // Before: no own keys, so no extensions, without a word.
    ['a Map', new Map([['tenant', 'acme']])],
  ])('extensions as %s are a ConfigError, and nothing is sent', async (_label, extensions) => {
    const bus = await memory();
    const topic = `ce.${uniqueName('ext')}`;
    const seen: Message<unknown>[] = [];
    await bus.subscribe(topic, (m) => void seen.push(m), { group: 'g' });
    const error = await refused(
      () => bus.publish(topic, 1, { cloudEvent: { ...base, extensions: extensions as never } }),
      'BUSBAR_CONFIG',
    );
    expect(error.message).toContain('extensions');
    await bus.publish(topic, 2, { cloudEvent: { ...base, extensions: { tenant: 'acme' } } });
    await waitFor(() => seen.length === 1, 2_000, 'the good event');
    expect(seen.map((m) => m.payload)).toEqual([2]);
    expect(seen[0]?.cloudEvent?.extensions).toEqual({ tenant: 'acme' });
  });

  it('an attribute busbar does not write (id, time) is a ConfigError naming it, not dropped', async () => {
    const bus = await memory();
    // Before: published with a fresh UUID as the event id, so downstream deduplication on 'evt-1' never happened.
    const error = await refused(
      () => bus.publish('ce.id', 1, { cloudEvent: { ...base, id: 'evt-1' } as never }),
      'BUSBAR_CONFIG',
    );
    expect(error.message).toContain("'id'");
    expect(error.message).toContain("publish option 'id'");
    await refused(() => bus.publish('ce.id', 1, { cloudEvent: { ...base, time: 'now' } as never }), 'BUSBAR_CONFIG');
    const onTopic = defineTopic('ce.id', undefined, { cloudEvent: { ...base, datacontenttype: 'x' } as never });
    await refused(() => bus.publish(onTopic, 1), 'BUSBAR_CONFIG');
    await expect(bus.publish('ce.id', 1, { id: 'evt-1', cloudEvent: base })).resolves.toBe('evt-1');
  });

  it('options whose getters throw are a ConfigError, not the raw TypeError', async () => {
    const bus = await memory();
    const throwing = Object.defineProperty({ type: 't' }, 'source', {
      enumerable: true,
      get() {
        throw new TypeError('getter exploded');
      },
    });
    const extensions = new Proxy({}, { ownKeys: () => [1] as never });
    for (const cloudEvent of [throwing, { ...base, extensions }]) {
      await refused(() => bus.publish('ce.get', 1, { cloudEvent: cloudEvent as never }), 'BUSBAR_CONFIG');
    }
    await expect(bus.publish('ce.get', 1, { cloudEvent: base })).resolves.toBeTypeOf('string');
  });

  it("the attributes count with the user's headers against the portable 40 KiB", async () => {
    const bus = await memory();
    const topic = `ce.${uniqueName('size')}`;
    const seen: Message<unknown>[] = [];
    await bus.subscribe(topic, (m) => void seen.push(m), { group: 'g' });
    const headers = { big: 'h'.repeat(30_000) };
    // 60 KB of headers on the wire: each half passed its own check before, and NATS refuses a 64 KiB header block.
    const error = await refused(
      () => bus.publish(topic, 1, { headers, cloudEvent: { ...base, extensions: { big: 'e'.repeat(30_000) } } }),
      'BUSBAR_INVALID_HEADER',
    );
    expect(error.message).toContain('40960');
    await bus.publish(topic, 2, { headers, cloudEvent: { ...base, extensions: { small: 'e' } } });
    await waitFor(() => seen.length === 1, 2_000, 'the event within the limit');
    expect(seen[0]?.payload).toBe(2);
    expect(seen[0]?.headers.big).toBe(headers.big);
  });
});
