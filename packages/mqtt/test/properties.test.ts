import { type Bus, BusbarError, type Message, PermanentError } from '@busbar/core';
import { brokerAvailable, sleep, uniqueName, waitFor } from '@busbar/testing';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { openBus, rawClient } from './helpers.js';

const ok = await brokerAvailable('mqtt');

/** Every uncaught exception or unhandled rejection while a test runs: there must be none. */
function watchProcess(): { errors: unknown[]; stop: () => void } {
  const errors: unknown[] = [];
  const onError = (error: unknown) => void errors.push(error);
  process.on('uncaughtException', onError);
  process.on('unhandledRejection', onError);
  return {
    errors,
    stop: () => {
      process.off('uncaughtException', onError);
      process.off('unhandledRejection', onError);
    },
  };
}

describe.runIf(ok)('mqtt: what MQTT 5 strings can carry', () => {
  let bus: Bus;
  let watch: ReturnType<typeof watchProcess>;
  beforeAll(async () => {
    bus = await openBus({ publishTimeoutMs: 4_000 });
  });
  afterAll(() => bus.close());
  afterEach(() => watch?.stop());

  /** The session still works: a publish/consume round trip on the same bus. */
  async function roundTrip(): Promise<void> {
    const topic = uniqueName('after');
    const got: number[] = [];
    const sub = await bus.subscribe<number>(topic, async (m) => void got.push(m.payload), { group: 'g' });
    try {
      await bus.publish(topic, 42);
      await waitFor(() => got.length === 1, 5_000, 'the round trip after the bad input');
      expect(got).toEqual([42]);
    } finally {
      await sub.close();
    }
  }

  it('header values: each round-trips (escaped on the wire where MQTT needs it) or is rejected typed', async () => {
    watch = watchProcess();
    const topic = uniqueName('hdr');
    const received: Message<unknown>[] = [];
    const sub = await bus.subscribe(topic, async (m) => void received.push(m), { group: 'g' });
    const raw = await rawClient();
    await raw.client.subscribeAsync(topic, { qos: 1 });
    const cases: Record<string, string> = {
      soh: 'a\u0001b',
      lf: 'a\nb',
      tab: 'a\tb',
      del: 'a\u007fb',
      nel: 'a\u0085b',
      lone: 'a\ud800b',
      nonchar: 'a\ufffeb\ufdd0',
      astralNonchar: 'a\u{1fffe}b',
      backslashes: '\\u0009 \u{1fffe} \\\\ \\ \\n',
      big: 'x'.repeat(70_000),
      atLimit: 'x'.repeat(65_535),
      emoji: '😀 🚀 𝄞',
      empty: '',
      unicode: 'Grüße, 世界',
    };
    const sent = new Map<string, string>();
    for (const [label, value] of Object.entries(cases)) {
      const outcome = await bus.publish(topic, label, { headers: { h: value } }).catch((e: unknown) => e);
      if (typeof outcome === 'string') {
        sent.set(label, value);
        continue;
      }
      expect(BusbarError.is(outcome), `${label}: ${String(outcome)}`).toBe(true);
      expect(['BUSBAR_INVALID_HEADER', 'BUSBAR_PAYLOAD_TOO_LARGE'], label).toContain((outcome as BusbarError).code);
      expect((outcome as BusbarError).retryable, label).toBe(false);
    }
    // What core allows but MQTT strings cannot carry is carried all the same.
    for (const label of ['astralNonchar', 'backslashes', 'emoji', 'empty', 'unicode']) {
      expect(sent.has(label), label).toBe(true);
    }
    // Core refuses BMP non-characters in header values; the astral ones reach the driver and are escaped.
    for (const label of ['soh', 'lf', 'lone', 'big', 'nonchar']) expect(sent.has(label), label).toBe(false);
    await waitFor(() => received.length === sent.size, 5_000, 'every accepted message');
    for (const m of received) expect(m.headers, String(m.payload)).toEqual({ h: sent.get(String(m.payload)) });
    // A plain MQTT consumer sees the escaped form and which properties were escaped.
    await waitFor(() => raw.packets.length === sent.size, 5_000, 'the raw copies');
    const nonchar = raw.packets.find((p) => String(p.payload) === '"astralNonchar"');
    expect(nonchar?.properties?.userProperties).toMatchObject({ h: 'a\\ud83f\\udffeb', 'busbar-esc': 'h' });
    await raw.client.endAsync();
    for (const name of ['n'.repeat(300), 'a\u0001b', 'a\tb']) {
      const error = await bus.publish(topic, 'name', { headers: { [name]: 'v' } }).catch((e: unknown) => e);
      expect(BusbarError.is(error, 'BUSBAR_INVALID_HEADER'), String(error)).toBe(true);
    }
    await sub.close();
    await roundTrip();
    await sleep(50);
    expect(watch.errors).toEqual([]);
  });

  it('a key with characters MQTT strings cannot carry round-trips', async () => {
    watch = watchProcess();
    const topic = uniqueName('key');
    const keys = ['k\u0001', 'k\tk', 'k\u0085', 'k\ufdd0', 'k\\u0041'];
    const got: (string | undefined)[] = [];
    await bus.subscribe(topic, async (m) => void got.push(m.key), { group: 'g' });
    for (const key of keys) await bus.publish(topic, 1, { key });
    await waitFor(() => got.length === keys.length, 5_000, 'every keyed message');
    expect(got.sort()).toEqual([...keys].sort());
    await roundTrip();
    expect(watch.errors).toEqual([]);
  });

  it('rejects a custom codec whose content type MQTT cannot carry', async () => {
    watch = watchProcess();
    const codec = {
      contentType: 'text/plain;\tx=1',
      encode: (v: string) => new TextEncoder().encode(v),
      decode: (b: Uint8Array) => new TextDecoder().decode(b),
    };
    const { defineTopic } = await import('@busbar/core');
    const topic = defineTopic<string>(uniqueName('ct'), undefined, { codec });
    const error = await bus.publish(topic, 'x').catch((e: unknown) => e);
    expect(BusbarError.is(error, 'BUSBAR_CONFIG'), String(error)).toBe(true);
    await roundTrip();
    expect(watch.errors).toEqual([]);
  });

  it('dead-letters an error whose message has characters JSON leaves raw (DEL, C1, non-characters)', async () => {
    watch = watchProcess();
    const topic = uniqueName('dlchars');
    const text = 'bad \u007f \u0085 \ufffe \u{10ffff} tab\there';
    await bus.subscribe(
      topic,
      async () => {
        throw new PermanentError(text);
      },
      { group: 'g' },
    );
    const messages: string[] = [];
    await bus.subscribeDeadLetters(topic, 'g', async (m) => void messages.push(m.deadLetter?.errorMessage ?? ''));
    await bus.publish(topic, 1);
    await waitFor(() => messages.length === 1, 8_000, 'the dead letter');
    expect(messages[0]).toBe(text);
    await roundTrip();
    expect(watch.errors).toEqual([]);
  });

  it('rejects topics MQTT reserves at publish and subscribe with InvalidTopicError', async () => {
    const raw = await rawClient();
    try {
      await raw.client.subscribeAsync('#', { qos: 0 });
      const reserved = ['a+b', 'a.+', 'a#', '$share.x', '$SYS.x', 'a/b', 'a\u0000b', 'a'.repeat(70_000)];
      for (const topic of reserved) {
        const pub = await bus.publish(topic, 1).catch((e: unknown) => e);
        expect(BusbarError.is(pub, 'BUSBAR_INVALID_TOPIC'), `publish ${topic.slice(0, 20)}`).toBe(true);
        const sub = await bus.subscribe(topic, async () => undefined).catch((e: unknown) => e);
        expect(BusbarError.is(sub, 'BUSBAR_INVALID_TOPIC'), `subscribe ${topic.slice(0, 20)}`).toBe(true);
      }
      await sleep(100);
      const leaked = raw.packets.filter((p) => ['a+', 'a#', 'a/b', 'a\u0000', '$'].some((s) => p.topic.startsWith(s)));
      expect(leaked).toEqual([]);
    } finally {
      await raw.client.endAsync();
    }
    await roundTrip();
  });
});
