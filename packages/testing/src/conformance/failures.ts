import diagnostics from 'node:diagnostics_channel';
import {
  bytesCodec,
  deadLetterTopic,
  defineTopic,
  MemoryIdempotencyStore,
  type Message,
  PermanentError,
  type SettledEvent,
} from '@busbar/core';
import { expect, it } from 'vitest';
import { sleep } from '../wait.js';
import { recorder, type Suite } from './context.js';

/**
 * A Standard Schema without depending on a schema library: `{ n: number }`. For `{ broken: true }` it answers
 * what the spec does not allow (a bare number), as a broken or hand-written schema can.
 */
const numberSchema = {
  '~standard': {
    version: 1 as const,
    vendor: 'busbar-test',
    validate: (value: unknown) =>
      typeof value === 'object' && value !== null && (value as { broken?: unknown }).broken === true
        ? (42 as unknown as { value: { n: number } })
        : typeof value === 'object' && value !== null && typeof (value as { n?: unknown }).n === 'number'
          ? { value: value as { n: number } }
          : { issues: [{ message: 'expected a number', path: ['n'] }] },
  },
};

export function failureTests(s: Suite): void {
  it('retries a failing handler with backoff, then dead-letters it with metadata, while others keep flowing', async () => {
    const bus = await s.bus();
    const topic = s.topic('retry');
    const group = s.group();
    const attempts: { attempt: number; at: number }[] = [];
    const good: number[] = [];
    let goodDoneAt = 0;
    await bus.subscribe<{ n: number; poison?: boolean }>(
      topic,
      async (m) => {
        if (m.payload.poison) {
          attempts.push({ attempt: m.attempt, at: Date.now() });
          throw new Error(`boom on attempt ${m.attempt}`);
        }
        good.push(m.payload.n);
        if (good.length === 20) goodDoneAt = Date.now();
      },
      { group, retry: { maxAttempts: 3, initialDelayMs: 300, maxDelayMs: 2_000, jitter: 0 } },
    );
    await s.settle();
    const poisonId = await bus.publish(topic, { n: -1, poison: true }, { key: 'poison', headers: { origin: 'test' } });
    await bus.publishBatch(
      topic,
      Array.from({ length: 20 }, (_, n) => ({ payload: { n } })),
    );

    const dead = recorder<{ n: number; poison?: boolean }>();
    await bus.subscribeDeadLetters<{ n: number; poison?: boolean }>(topic, group, dead.handler as never);
    await s.waitFor(() => dead.messages.length >= 1, 30_000, 'the dead letter');
    expect(attempts.map((a) => a.attempt)).toEqual([1, 2, 3]);
    // Backoff: 300 ms then 600 ms (jitter 0), with scheduling slack.
    expect((attempts[1] as { at: number }).at - (attempts[0] as { at: number }).at).toBeGreaterThanOrEqual(250);
    expect((attempts[2] as { at: number }).at - (attempts[1] as { at: number }).at).toBeGreaterThanOrEqual(500);
    // The other 20 were not held up behind the failing one.
    expect(good).toHaveLength(20);
    expect(goodDoneAt).toBeLessThan((attempts[2] as { at: number }).at);

    const letter = dead.messages[0] as Message<{ n: number; poison?: boolean }>;
    expect(letter.id).toBe(poisonId);
    expect(letter.payload).toEqual({ n: -1, poison: true });
    expect(letter.key).toBe('poison');
    expect(letter.headers).toEqual({ origin: 'test' });
    const info = letter.deadLetter;
    expect(info).toBeDefined();
    expect(info?.errorName).toBe('Error');
    expect(info?.errorMessage).toBe('boom on attempt 3');
    expect(info?.errorStack).toContain('boom on attempt 3');
    expect(info?.attempts).toBe(3);
    expect(info?.topic).toBe(topic);
    expect(info?.group).toBe(group);
    expect(info?.firstFailureAt.getTime()).toBeGreaterThanOrEqual((attempts[0] as { at: number }).at - 1_000);
    expect(info?.lastFailureAt.getTime()).toBeGreaterThanOrEqual(info?.firstFailureAt.getTime() ?? 0);
  });

  it('dead-letters a PermanentError at once, without retries', async () => {
    const bus = await s.bus();
    const topic = s.topic('permanent');
    const group = s.group();
    const attempts: number[] = [];
    await bus.subscribe(
      topic,
      async (m) => {
        attempts.push(m.attempt);
        throw new PermanentError('not recoverable');
      },
      { group, retry: { maxAttempts: 5, initialDelayMs: 50 } },
    );
    await s.settle();
    await bus.publish(topic, { any: 'thing' });
    const dead = recorder();
    await bus.subscribeDeadLetters(topic, group, dead.handler);
    await s.waitFor(() => dead.messages.length >= 1, 20_000, 'the dead letter');
    await sleep(s.ms(300));
    expect(attempts).toEqual([1]);
    expect(dead.messages[0]?.deadLetter?.errorName).toBe('PermanentError');
    expect(dead.messages[0]?.deadLetter?.attempts).toBe(1);
  });

  it('dead-letters undecodable and schema-invalid messages without running the handler', async () => {
    const bus = await s.bus();
    const name = s.topic('poison');
    const group = s.group();
    const typed = defineTopic(name, numberSchema);
    const calls: unknown[] = [];
    await bus.subscribe(typed, async (m) => void calls.push(m.payload), {
      group,
      retry: { maxAttempts: 5, initialDelayMs: 50 },
    });
    await s.settle();
    // Bypass the schema and the JSON codec on the publishing side: a body that says it is JSON and is not.
    const badJson = await bus.publish(
      defineTopic(name, undefined, { codec: { ...bytesCodec, contentType: 'application/json' } }),
      new TextEncoder().encode('{not json'),
    );
    const badShape = await bus.publish(name, { n: 'not a number' });
    // A schema that answers nonsense: a failed validation, not an undefined payload for the handler.
    const brokenSchema = await bus.publish(name, { n: 1, broken: true });
    const fine = await bus.publish(typed, { n: 7 });
    const dead = recorder();
    await bus.subscribeDeadLetters(name, group, dead.handler);
    await s.waitFor(
      () => dead.messages.length >= 3 && calls.length >= 1,
      20_000,
      'three dead letters and one good message',
    );
    expect(calls).toEqual([{ n: 7 }]);
    const byId = new Map(dead.messages.map((m) => [m.id, m]));
    expect(byId.get(badJson)?.deadLetter?.errorName).toBe('DecodeError');
    expect(byId.get(badJson)?.deadLetter?.attempts).toBe(0);
    // The body is kept byte for byte, handed over as bytes when the topic codec cannot read it.
    expect(new TextDecoder().decode(byId.get(badJson)?.payload as Uint8Array)).toBe('{not json');
    expect(byId.get(badShape)?.deadLetter?.errorName).toBe('ValidationError');
    expect(byId.get(badShape)?.payload).toEqual({ n: 'not a number' });
    expect(byId.get(brokenSchema)?.deadLetter?.errorName).toBe('ValidationError');
    expect(byId.get(brokenSchema)?.deadLetter?.attempts).toBe(0);
    expect(byId.has(fine)).toBe(false);
  });

  it('peek sees a dead-letter queue of more than a hundred whole (a walk held at most its prefetch of 100)', async () => {
    const bus = await s.bus();
    const topic = s.topic('dlmany');
    const group = s.group();
    let failed = 0;
    await bus.subscribe(
      topic,
      () => {
        failed++;
        throw new PermanentError('no');
      },
      { group, concurrency: 10 },
    );
    await s.settle();
    await bus.publishBatch(
      topic,
      Array.from({ length: 150 }, (_, n) => ({ payload: n })),
    );
    await s.waitFor(() => failed >= 150, 60_000, 'every message failed');
    let letters = await bus.peekDeadLetters(topic, group, { idleMs: s.ms(1_000) });
    for (let i = 0; i < 10 && letters.length < 150; i++) {
      letters = await bus.peekDeadLetters(topic, group, { idleMs: s.ms(1_000) });
    }
    expect(letters).toHaveLength(150);
  });

  it('a dead letter whose body is not what its content type says is read back as bytes, never dropped', async () => {
    const bus = await s.bus();
    const topic = s.topic('dlbytes');
    const group = s.group();
    // The queue exists before the letter arrives (peek declares its reader group).
    expect(await bus.peekDeadLetters(topic, group, { idleMs: s.ms(300) })).toHaveLength(0);
    const mislabelled = defineTopic<string>(deadLetterTopic(topic, group), undefined, {
      codec: { contentType: 'application/json', encode: (v) => new TextEncoder().encode(v), decode: () => '' },
    });
    await bus.publish(mislabelled, '{not json');
    const peek = () => bus.peekDeadLetters(topic, group, { idleMs: s.ms(1_000) });
    let letters = await peek();
    for (let i = 0; i < 10 && letters.length === 0; i++) letters = await peek();
    expect(letters).toHaveLength(1);
    // Peeking took nothing off the queue.
    expect(await peek()).toHaveLength(1);
    const read: unknown[] = [];
    await bus.subscribeDeadLetters(topic, group, (m) => void read.push(m.payload));
    await s.waitFor(() => read.length === 1, 20_000, 'the letter read as bytes');
    expect(new TextDecoder().decode(read[0] as Uint8Array)).toBe('{not json');
  });

  it('re-drives dead letters to their topic (rate-limited); a filter that throws drops none', async () => {
    const bus = await s.bus();
    const topic = s.topic('redrive');
    const group = s.group();
    let broken = true;
    const handled: Message<number>[] = [];
    const deadLettered = new Set<string>();
    const onSettled = (event: unknown) => {
      const e = event as SettledEvent;
      if (e.topic === topic && e.outcome === 'dead-lettered') deadLettered.add(e.id);
    };
    diagnostics.subscribe('busbar:settled', onSettled);
    try {
      await bus.subscribe<number>(
        topic,
        async (m) => {
          if (broken) throw new PermanentError('downstream is broken');
          handled.push(m);
        },
        { group },
      );
      await s.settle();
      const ids = await bus.publishBatch(
        topic,
        [1, 2, 3].map((payload) => ({ payload, headers: { kept: 'yes' } })),
      );
      await s.waitFor(() => deadLettered.size >= 3, 20_000, 'three dead letters');
      // A filter that throws ends the walk with its error and drops nothing (the re-drive below still finds 3).
      const bug = new Error('filter bug');
      const throwing = (): boolean => {
        throw bug;
      };
      // A long idleMs costs nothing here (the first dead letter ends the walk) and keeps a loaded machine, where
      // the walk's subscription takes a while to see its first dead letter, from ending it with none.
      const idleMs = s.ms(10_000);
      await expect(bus.redrive(topic, group, { idleMs, filter: throwing })).rejects.toBe(bug);
      await expect(bus.purgeDeadLetters(topic, group, { idleMs, filter: throwing })).rejects.toBe(bug);
      broken = false;
      // Rate-limited: its waits once armed negative timers (the suite's negative-timer check covers it).
      expect(await bus.redrive(topic, group, { idleMs: s.ms(1_500), ratePerSecond: 1_000 })).toBe(3);
      await s.waitFor(() => handled.length >= 3, 20_000, 'the re-driven messages');
      expect(new Set(handled.map((m) => m.id))).toEqual(new Set(ids));
      expect(handled.map((m) => m.payload).sort()).toEqual([1, 2, 3]);
      for (const m of handled) {
        expect(m.headers).toEqual({ kept: 'yes' });
        expect(m.deadLetter).toBeUndefined();
      }
      // Nothing is left to re-drive.
      expect(await bus.redrive(topic, group, { idleMs: s.ms(500) })).toBe(0);
    } finally {
      diagnostics.unsubscribe('busbar:settled', onSettled);
    }
  });

  it('idempotent consumers run the handler once per id under duplicate publishes and redeliveries', async () => {
    const topic = s.topic('idem');
    const group = s.group();
    const store = new MemoryIdempotencyStore();
    const effects = new Map<string, number>();
    const failedOnce = new Set<string>();
    const [m1, m2] = await Promise.all([s.bus(), s.bus()]);
    const handler = async (m: Message<number>) => {
      // Every third message fails on its first attempt: the retry must not double the effect.
      if (m.payload % 3 === 0 && !failedOnce.has(m.id)) {
        failedOnce.add(m.id);
        throw new Error('transient');
      }
      await sleep(5);
      effects.set(m.id, (effects.get(m.id) ?? 0) + 1);
    };
    const options = {
      group,
      concurrency: 4,
      idempotency: { store },
      retry: { maxAttempts: 5, initialDelayMs: 50, maxDelayMs: 200 },
    };
    await m1.subscribe<number>(topic, handler, options);
    await m2.subscribe<number>(topic, handler, options);
    await s.settle();
    const publisher = await s.bus();
    const ids = Array.from({ length: 30 }, (_, n) => `idem-${n}-${topic.slice(-8)}`);
    // Each message published three times with the same id, concurrently.
    await Promise.all(
      [0, 1, 2].flatMap(() => ids.map((id, n) => publisher.publish(topic, n, { id, key: `k${n % 4}` }))),
    );
    await s.waitFor(() => ids.every((id) => effects.has(id)), 30_000, 'every id applied');
    await sleep(s.ms(1_000));
    for (const id of ids) expect(effects.get(id), id).toBe(1);
  });
}
