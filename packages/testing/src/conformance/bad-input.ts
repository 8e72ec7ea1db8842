import { deadLetterTopic, type Message, type SettledEvent } from '@busbar/core';
import { afterAll, afterEach, beforeAll, expect, it } from 'vitest';
import { callbackTests } from './bad-input-callbacks.js';
import {
  HEADER_CASES,
  MUST_DELIVER,
  MUST_REJECT,
  OPTION_CASES,
  THROWABLES,
  TOPIC_CASES,
  TOPICS_REJECTED_EVERYWHERE,
} from './bad-input-cases.js';
import { deadLettersOf, expectInputError, roundTrip, settle } from './bad-input-helpers.js';
import { recorder, type Suite, uniqueIds } from './context.js';
import { Report } from './report.js';

/**
 * The bad-input section: what users send that no happy-path test imagined. For every case the rule is the
 * same on every transport: a typed, correctly flagged BusbarError or correct handling; no crash, no unhandled
 * rejection, no hot loop (handler runs are counted); and the bus still does a round trip afterwards. What
 * each case got is recorded per transport (see report.ts) and becomes the table in docs/bad-input.md.
 */
export function badInputTests(s: Suite, transport: string): void {
  const report = new Report(transport);
  const unhandled: unknown[] = [];
  const onUnhandled = (reason: unknown) => void unhandled.push(reason);
  beforeAll(() => {
    process.on('unhandledRejection', onUnhandled);
  });
  afterEach(() => {
    expect(unhandled.splice(0), 'unhandled rejections').toEqual([]);
  });
  afterAll(() => {
    process.off('unhandledRejection', onUnhandled);
    report.write();
  });

  it('header names and values: typed error or delivered unchanged', async () => {
    const bus = await s.bus();
    const topic = s.topic('headers');
    const got = recorder<number>();
    await bus.subscribe(topic, got.handler, { group: s.group() });
    await s.settle();
    const sent: { label: string; id: string; headers: Record<string, string> }[] = [];
    for (const [label, headers] of HEADER_CASES) {
      const result = await settle(bus.publish(topic, sent.length, { headers: headers as Record<string, string> }));
      if (result.ok) sent.push({ label, id: result.value, headers: headers as Record<string, string> });
      else
        report.set(label, expectInputError(result.error, label, ['BUSBAR_INVALID_HEADER', 'BUSBAR_PAYLOAD_TOO_LARGE']));
    }
    await s.waitFor(() => uniqueIds(got.messages).size >= sent.length, 20_000, 'the accepted header cases');
    for (const { label, id, headers } of sent) {
      const message = got.messages.find((m) => m.id === id);
      expect(message?.headers, label).toEqual(headers);
      report.set(label, 'delivered unchanged');
    }
    // Whatever the transport decided, these must be the same everywhere (portable rules in core).
    for (const label of MUST_REJECT) expect(report.get(label) ?? `missing: ${label}`, label).toMatch(/^BUSBAR_/);
    for (const label of MUST_DELIVER) expect(report.get(label), label).toBe('delivered unchanged');
    await roundTrip(s, bus);
  });

  it('payloads that cannot be encoded, and sizes in UTF-8 bytes at the limit +/- 1', async () => {
    const limit = 1_000;
    const bus = await s.bus({ maxPayloadBytes: limit });
    const topic = s.topic('payload');
    const got = recorder<unknown>();
    await bus.subscribe(topic, got.handler, { group: s.group() });
    await s.settle();
    const circular: Record<string, unknown> = {};
    circular.self = circular;
    const unencodable: [string, unknown][] = [
      ['payload: BigInt', { n: 1n }],
      ['payload: circular reference', circular],
      ['payload: undefined', undefined],
      ['payload: a function', () => 1],
      [
        'payload: toJSON throws null',
        {
          toJSON() {
            throw null;
          },
        },
      ],
    ];
    for (const [label, payload] of unencodable) {
      const result = await settle(bus.publish(topic, payload));
      expect(result.ok, label).toBe(false);
      report.set(label, expectInputError(result.error, label, ['BUSBAR_SERIALIZATION']));
    }
    // JSON of a string of n 4-byte emoji and `pad` ASCII letters: 2 quotes + 4n + pad bytes.
    const sized = (bytes: number) => '😀'.repeat(Math.floor((bytes - 2) / 4)) + 'a'.repeat((bytes - 2) % 4);
    const atLimit = await settle(bus.publish(topic, sized(limit)));
    expect(atLimit.ok, `payload at the byte limit: ${String(atLimit.error)}`).toBe(true);
    report.set('payload: multibyte text at the byte limit', 'delivered unchanged');
    await s.waitFor(() => got.messages.length >= 1, 10_000, 'the payload at the limit');
    expect(got.messages[0]?.payload).toBe(sized(limit));
    const over = await settle(bus.publish(topic, sized(limit + 1)));
    report.set(
      'payload: multibyte text 1 byte over the limit',
      expectInputError(over.error, 'over the limit', ['BUSBAR_PAYLOAD_TOO_LARGE']),
    );
    const under = await settle(bus.publish(topic, sized(limit - 1)));
    expect(under.ok, 'one byte under').toBe(true);
    await roundTrip(s, bus);
  });

  it("topic names with every broker's reserved characters: typed error or a working round trip", async () => {
    const bus = await s.bus();
    for (const [label, name] of TOPIC_CASES) {
      const sub = await settle(() => bus.subscribe(name as string, () => undefined, { group: s.group() }));
      const pub = await settle(() => bus.publish(name as string, 1));
      if (sub.ok) await sub.value.close();
      if (!sub.ok || !pub.ok) {
        const error = sub.ok ? pub.error : sub.error;
        report.set(label, expectInputError(error, label, ['BUSBAR_INVALID_TOPIC', 'BUSBAR_UNSUPPORTED']));
      } else {
        report.set(label, 'accepted (a valid name on this broker)');
      }
      expect(report.get(label), label).toBeDefined();
    }
    for (const label of TOPICS_REJECTED_EVERYWHERE) expect(report.get(label), label).toMatch(/^BUSBAR_INVALID_TOPIC/);
    await roundTrip(s, bus);
  });

  it('delays, timeouts and counts that no timer can hold are configuration errors', async () => {
    const bus = await s.bus();
    const topic = s.topic('options');
    for (const [label, options] of OPTION_CASES) {
      const result = await settle(bus.subscribe(topic, () => undefined, { group: s.group(), ...options }));
      if (result.ok) await result.value.close();
      report.set(label, expectInputError(result.error, label, ['BUSBAR_CONFIG']));
    }
    await roundTrip(s, bus);
  });

  it('a signal that is no AbortSignal: a typed error from every call that takes one, and the bus still works', async () => {
    const bus = await s.bus();
    const topic = s.topic('signal');
    const notSignals: [string, unknown][] = [
      ['a plain object', {}],
      ['null', null],
    ];
    for (const [what, signal] of notSignals) {
      const calls: [string, () => Promise<unknown>][] = [
        ['publish', () => bus.publish(topic, 1, { signal: signal as never })],
        ['publishBatch', () => bus.publishBatch(topic, [{ payload: 1 }], { signal: signal as never })],
        ['subscribe', () => bus.subscribe(topic, () => undefined, { group: s.group(), signal: signal as never })],
      ];
      if (bus.capabilities.requestReply) {
        calls.push(['request', () => bus.request(topic, 1, { timeoutMs: 1_000, signal: signal as never })]);
      }
      for (const [call, run] of calls) {
        const result = await settle(run);
        if (result.ok && call === 'subscribe') await (result.value as { close(): Promise<void> }).close();
        report.set(
          `signal: ${what} to ${call}`,
          expectInputError(result.error, `${what} to ${call}`, ['BUSBAR_CONFIG']),
        );
      }
    }
    await roundTrip(s, bus);
  });

  it('handlers that throw what is not an Error: retried, dead-lettered, described', async () => {
    const bus = await s.bus();
    const { runs, letters } = await deadLettersOf(s, bus, 'throws', THROWABLES.length, (i) => {
      throw (THROWABLES[i] as [string, () => unknown])[1]();
    });
    for (const [i, [label]] of THROWABLES.entries()) {
      const letter = letters[i] as Message<unknown>;
      expect(runs.get(i), label).toBe(2);
      expect(letter.deadLetter?.attempts, label).toBe(2);
      expect(letter.deadLetter?.errorName.length, label).toBeGreaterThan(0);
      expect(letter.deadLetter?.errorMessage.length, label).toBeLessThanOrEqual(1_100);
      report.set(`handler throws ${label}`, `dead-lettered as ${letter.deadLetter?.errorName} after 2 attempts`);
    }
    await roundTrip(s, bus);
  });

  callbackTests(s, report);

  it('300 always-failing messages do not hold up 200 healthy ones, and all of them get dead-lettered', async () => {
    const bus = await s.bus();
    const topic = s.topic('flood');
    const group = s.group();
    const runs = new Map<number, number>();
    const healthy = new Set<number>();
    await bus.subscribe<{ n: number; bad: boolean }>(
      topic,
      (m) => {
        if (m.payload.bad) {
          runs.set(m.payload.n, (runs.get(m.payload.n) ?? 0) + 1);
          throw new Error('poison');
        }
        healthy.add(m.payload.n);
      },
      { group, concurrency: 10, retry: { maxAttempts: 3, initialDelayMs: 1_000, maxDelayMs: 1_000, jitter: 0 } },
    );
    const dead = recorder<{ n: number }>();
    await bus.subscribeDeadLetters<{ n: number }>(topic, group, dead.handler as never);
    await s.settle();
    await bus.publishBatch(
      topic,
      Array.from({ length: 300 }, (_, n) => ({ payload: { n, bad: true } })),
    );
    // Wait until the failing ones are in their retry delay, then send the healthy ones behind them.
    await s.waitFor(() => runs.size >= 300, 30_000, 'a first run of every failing message');
    const sentAt = Date.now();
    await bus.publishBatch(
      topic,
      Array.from({ length: 200 }, (_, n) => ({ payload: { n, bad: false } })),
    );
    await s.waitFor(() => healthy.size >= 200, 10_000, '200 healthy messages behind 300 failing ones');
    const healthyMs = Date.now() - sentAt;
    await s.waitFor(() => uniqueIds(dead.messages).size >= 300, 90_000, '300 dead letters');
    const counts = [...runs.values()];
    // At-least-once allows a redelivery; a loop would show hundreds.
    expect(Math.max(...counts)).toBeLessThanOrEqual(4);
    expect(counts.reduce((a, b) => a + b, 0)).toBeLessThanOrEqual(300 * 3 + 30);
    expect(healthyMs).toBeLessThan(s.ms(10_000));
    report.set('flood: 300 failing then 200 healthy', 'healthy ones handled at once, failing ones dead-lettered');
    await roundTrip(s, bus);
  }, 150_000);

  it('a refused dead-letter write backs off (no loop) and lands once the broker takes writes again', async () => {
    const bus = await s.bus();
    const topic = s.topic('dlqfail');
    const group = s.group();
    const restore = await s.options.refuseWrites(deadLetterTopic(topic, group));
    let restored = false;
    try {
      const events: SettledEvent[] = [];
      const watch = await import('node:diagnostics_channel');
      const listener = (e: unknown) => {
        const event = e as SettledEvent;
        if (event.topic === topic) events.push(event);
      };
      watch.subscribe('busbar:settled', listener);
      let runs = 0;
      const healthy: number[] = [];
      try {
        await bus.subscribe<{ n: number }>(
          topic,
          (m) => {
            if (m.payload.n < 0) {
              runs++;
              throw new Error('always');
            }
            healthy.push(m.payload.n);
          },
          { group, retry: { maxAttempts: 2, initialDelayMs: 50, maxDelayMs: 50 } },
        );
        await s.settle();
        await bus.publish(topic, { n: -1 });
        await s.waitFor(() => events.some((e) => e.outcome === 'dead-letter-failed'), 30_000, 'the refused write');
        await bus.publishBatch(
          topic,
          Array.from({ length: 20 }, (_, n) => ({ payload: { n } })),
        );
        await s.waitFor(() => healthy.length >= 20, 10_000, 'healthy messages while the dead letter waits');
        await new Promise((r) => setTimeout(r, 2_000));
        expect(runs, 'handler runs while the dead-letter write is refused').toBeLessThanOrEqual(3);
        const refusals = events.filter((e) => e.outcome === 'dead-letter-failed').length;
        expect(refusals, 'refused writes in ~2 s').toBeLessThanOrEqual(3);
        await restore();
        restored = true;
        const dead = recorder<{ n: number }>();
        await bus.subscribeDeadLetters<{ n: number }>(topic, group, dead.handler as never);
        await s.waitFor(() => dead.messages.length >= 1, 30_000, 'the dead letter after the broker takes writes');
        expect(dead.messages[0]?.deadLetter?.errorMessage).toBe('always');
        expect(runs).toBeLessThanOrEqual(3);
        report.set('dead-letter write refused by the broker', 'backs off, written once the broker takes it');
      } finally {
        watch.unsubscribe('busbar:settled', listener);
      }
    } finally {
      if (!restored) await restore();
    }
    await roundTrip(s, bus);
  }, 90_000);

  it('close() with a handler that never returns is bounded by closeTimeoutMs', async () => {
    const bus = await s.bus({ closeTimeoutMs: 1_000 });
    const topic = s.topic('hung');
    let started = false;
    await bus.subscribe(
      topic,
      () => {
        started = true;
        return new Promise(() => undefined);
      },
      { group: s.group() },
    );
    await s.settle();
    await bus.publish(topic, 1);
    await s.waitFor(() => started, 10_000, 'the hung handler');
    const t0 = Date.now();
    await bus.close();
    const took = Date.now() - t0;
    expect(took).toBeLessThan(2_500);
    report.set('close() with a handler that never returns', 'returns within closeTimeoutMs');
    await roundTrip(s, await s.bus());
  });
}
