import type { Bus } from '@busbar/core';
import { uniqueName, waitFor } from '@busbar/testing';
import { Registry } from 'prom-client';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { type BusbarMetrics, registerBusbarMetrics } from '../src/index.js';
import { parseExposition, total } from './exposition.js';

/** The Prometheus counters move for success, retry and dead-letter on one transport. */
export function counterTests(connect: () => Promise<Bus>, timeoutMs = 15_000): void {
  let bus: Bus;
  let metrics: BusbarMetrics;
  const registry = new Registry();
  beforeAll(async () => {
    metrics = registerBusbarMetrics({ registry });
    bus = await connect();
    metrics.watch(bus);
  });
  afterAll(async () => {
    metrics?.unregister();
    await bus?.close();
  });

  it('counts success, retry and dead-letter, and the output parses', async () => {
    const topic = uniqueName('prom');
    const group = uniqueName('g');
    const runs = new Map<string, number>();
    const sub = await bus.subscribe<{ kind: string }>(
      topic,
      async (message) => {
        const n = (runs.get(message.id) ?? 0) + 1;
        runs.set(message.id, n);
        if (message.payload.kind === 'poison') throw new Error('always fails');
        if (message.payload.kind === 'flaky' && n === 1) throw new Error('fails once');
      },
      { group, retry: { maxAttempts: 2, initialDelayMs: 20, maxDelayMs: 50, jitter: 0 } },
    );
    await bus.publish(topic, { kind: 'ok' });
    await bus.publishBatch(topic, [{ payload: { kind: 'flaky' } }, { payload: { kind: 'poison' } }]);

    const read = async () => parseExposition(await registry.metrics());
    await waitFor(
      async () => total(await read(), 'busbar_messages_processed_total', { topic }) === 5,
      timeoutMs,
      'five settlements (ok, flaky x2, poison x2)',
    );
    await sub.close();
    const samples = await read();
    const count = (status: string) => total(samples, 'busbar_messages_processed_total', { topic, group, status });
    expect(count('success')).toBe(2);
    expect(count('retry')).toBe(2);
    expect(count('dead_letter')).toBe(1);
    expect(
      total(samples, 'busbar_dead_letters_total', { topic, group, dead_letter_topic: `${topic}.${group}.dlq` }),
    ).toBe(1);
    expect(total(samples, 'busbar_messages_published_total', { topic, status: 'success' })).toBe(3);
    expect(total(samples, 'busbar_publish_duration_seconds_count', { topic, status: 'success' })).toBe(2);
    expect(total(samples, 'busbar_process_duration_seconds_count', { topic, group })).toBe(5);
    expect(
      total(samples, 'busbar_process_duration_seconds_bucket', { topic, group, status: 'success', le: '+Inf' }),
    ).toBe(2);
    expect(total(samples, 'busbar_in_flight', { topic, group })).toBe(0);
    expect(samples.some((s) => s.name === 'busbar_connection_up')).toBe(true);
  });
}
