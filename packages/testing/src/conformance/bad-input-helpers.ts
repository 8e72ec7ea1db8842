import { type Bus, BusbarError, type Message } from '@busbar/core';
import { expect } from 'vitest';
import { recorder, type Suite, uniqueIds } from './context.js';
import type { Outcome } from './report.js';

export type Settled<T> = { ok: true; value: T; error?: undefined } | { ok: false; value?: undefined; error: unknown };

/** Runs a call that may throw synchronously or reject (JavaScript callers can pass anything). */
export async function settle<T>(call: Promise<T> | (() => Promise<T>)): Promise<Settled<T>> {
  try {
    return { ok: true, value: await (typeof call === 'function' ? call() : call) };
  } catch (error) {
    return { ok: false, error };
  }
}

/** A bad input must fail typed, not retryable, with one of the expected codes. Returns the report cell. */
export function expectInputError(error: unknown, label: string, codes: readonly string[]): Outcome {
  expect(BusbarError.is(error), `${label}: ${String(error)}`).toBe(true);
  const e = error as BusbarError;
  expect(codes, `${label}: ${e.code} ${e.message}`).toContain(e.code);
  expect(e.retryable, `${label} must not be retryable`).toBe(false);
  return `${e.code}`;
}

/** A round trip on `bus` after a bad input: the bus still works. */
export async function roundTrip(s: Suite, bus: Bus): Promise<void> {
  const topic = s.topic('after');
  const got = recorder<string>();
  const sub = await bus.subscribe<string>(topic, got.handler, { group: s.group() });
  await s.settle();
  await bus.publish(topic, 'still works');
  await s.waitFor(() => got.messages.length >= 1, 20_000, 'a round trip after the bad input');
  expect(got.messages[0]?.payload).toBe('still works');
  await sub.close();
}

/**
 * Runs `handler(i)` as the handler of message `i` for `count` messages (2 attempts each, 50 ms apart) and waits
 * for every one's dead letter: returns how often each ran and its dead letter, for the caller to check.
 */
export async function deadLettersOf(
  s: Suite,
  bus: Bus,
  name: string,
  count: number,
  handler: (i: number) => unknown,
): Promise<{ runs: Map<number, number>; letters: Message<unknown>[] }> {
  const topic = s.topic(name);
  const group = s.group();
  const runs = new Map<number, number>();
  await bus.subscribe<number>(
    topic,
    (m) => {
      runs.set(m.payload, (runs.get(m.payload) ?? 0) + 1);
      return handler(m.payload);
    },
    { group, retry: { maxAttempts: 2, initialDelayMs: 50, maxDelayMs: 50 } },
  );
  const dead = recorder<unknown>();
  await bus.subscribeDeadLetters(topic, group, dead.handler);
  await s.settle();
  await bus.publishBatch(
    topic,
    Array.from({ length: count }, (_, i) => ({ payload: i })),
  );
  await s.waitFor(() => uniqueIds(dead.messages).size >= count, 30_000, 'every dead letter');
  const letters = Array.from(
    { length: count },
    (_, i) => dead.messages.find((m) => m.payload === i) as Message<unknown>,
  );
  return { runs, letters };
}
