import type { Message } from '@busbar/core';
import { expect, it } from 'vitest';
import { deadLettersOf, roundTrip } from './bad-input-helpers.js';
import { recorder, type Suite } from './context.js';
import type { Report } from './report.js';

/**
 * Part of the bad-input section: user code that busbar calls and that misbehaves (a handler's odd return value,
 * a logger or an idempotency store that throws). The rule is the section's: handled like a failing handler or
 * dropped, never a message left unsettled, and the bus still works.
 */
export function callbackTests(s: Suite, report: Report): void {
  it('handlers that return a thenable whose then() throws, or a Proxy that throws on every trap: retried, dead-lettered', async () => {
    // Core asks a handler's result for `then`; both used to throw outside the failure path, and the message
    // was left unsettled (or, since the safety net, released again every second, never dead-lettered).
    const returns: [string, () => unknown][] = [
      [
        'a thenable whose then() throws',
        () => ({
          // biome-ignore lint/suspicious/noThenProperty: the hostile value under test
          then() {
            throw new Error('then() failed');
          },
        }),
      ],
      [
        'a Proxy that throws on every trap',
        () =>
          new Proxy(
            {},
            {
              get() {
                throw new Error('trap');
              },
            },
          ),
      ],
    ];
    const bus = await s.bus();
    const { runs, letters } = await deadLettersOf(s, bus, 'returns', returns.length, (i) =>
      (returns[i] as [string, () => unknown])[1](),
    );
    for (const [i, [label]] of returns.entries()) {
      const letter = letters[i] as Message<unknown>;
      expect(runs.get(i), label).toBe(2);
      expect(letter.deadLetter?.attempts, label).toBe(2);
      report.set(`handler returns ${label}`, `dead-lettered as ${letter.deadLetter?.errorName} after 2 attempts`);
    }
    await roundTrip(s, bus);
  });

  it('a logger that throws loses its lines, not messages: retries, dead letters and later messages still flow', async () => {
    // A log transport that is down (or a logger that throws a string) is called from settle paths, ack
    // callbacks and timers; a throw there must not leave a message unsettled or reject unhandled.
    const boom = (): never => {
      throw 'log transport down';
    };
    const bus = await s.bus({ logger: { debug: boom, info: boom, warn: boom, error: boom } });
    const topic = s.topic('badlog');
    const group = s.group();
    const handled: number[] = [];
    await bus.subscribe<number>(
      topic,
      (m) => {
        if (m.payload < 0) throw new Error('fails every time');
        handled.push(m.payload);
      },
      { group, retry: { maxAttempts: 2, initialDelayMs: 50, maxDelayMs: 50 } },
    );
    const dead = recorder<number>();
    await bus.subscribeDeadLetters(topic, group, dead.handler as never);
    await s.settle();
    await bus.publish(topic, -1);
    await bus.publish(topic, 1);
    await s.waitFor(
      () => dead.messages.length >= 1 && handled.length >= 1,
      30_000,
      'the dead letter and the healthy one',
    );
    await bus.publish(topic, 2);
    await s.waitFor(() => handled.includes(2), 30_000, 'a message after the failed log lines');
    expect(dead.messages[0]?.payload).toBe(-1);
    expect(dead.messages[0]?.deadLetter?.attempts).toBe(2);
    report.set('logger that throws', 'lines dropped, messages settled');
    await roundTrip(s, bus);
  });

  it('an idempotency store that throws synchronously: retried with backoff, dead-lettered, the bus still works', async () => {
    const bus = await s.bus();
    const topic = s.topic('badstore');
    const group = s.group();
    const thrower = (): never => {
      throw new Error('store down');
    };
    let runs = 0;
    await bus.subscribe<number>(
      topic,
      () => {
        runs++;
      },
      {
        group,
        idempotency: { store: { claim: thrower, complete: thrower, release: thrower } },
        retry: { maxAttempts: 2, initialDelayMs: 50, maxDelayMs: 50 },
      },
    );
    const dead = recorder<number>();
    await bus.subscribeDeadLetters(topic, group, dead.handler as never);
    await s.settle();
    await bus.publish(topic, 1);
    await s.waitFor(() => dead.messages.length >= 1, 30_000, 'the dead letter');
    expect(runs).toBe(0);
    expect(dead.messages[0]?.deadLetter?.attempts).toBe(2);
    report.set(
      'idempotency store that throws',
      `dead-lettered as ${dead.messages[0]?.deadLetter?.errorName} after 2 attempts`,
    );
    await roundTrip(s, bus);
  });
}
