import type { Bus } from '@busbar/core';
import { uniqueName, waitFor } from '@busbar/testing';
import { Registry } from 'prom-client';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { type BusbarMetrics, registerBusbarMetrics } from '../src/index.js';
import { parseExposition, total } from './exposition.js';

/** A bus watched by its own metrics registry for one suite's tests: opened before them, closed after. */
function watchedBus(connect: () => Promise<Bus>): { readonly bus: Bus; readonly registry: Registry } {
  const registry = new Registry();
  let metrics: BusbarMetrics | undefined;
  let bus: Bus | undefined;
  beforeAll(async () => {
    metrics = registerBusbarMetrics({ registry });
    bus = await connect();
    metrics.watch(bus);
  });
  afterAll(async () => {
    metrics?.unregister();
    await bus?.close();
  });
  return {
    registry,
    get bus() {
      return bus as Bus;
    },
  };
}

/** The Prometheus counters move for success, retry and dead-letter on one transport. */
export function counterTests(connect: () => Promise<Bus>, timeoutMs = 15_000): void {
  const watched = watchedBus(connect);

  it(
    'busbar_connection_up: a closed subscription or bus leaves no series at 0 behind, another bus of the transport keeps its own',
    async () => {
      const { bus: other, registry } = watched;
      const read = async () =>
        parseExposition(await registry.metrics()).filter((s) => s.name === 'busbar_connection_up');
      const names = (b: Bus) => b.health().connections.map((c) => c.name);
      const bus = await connect();
      let closed = false;
      try {
        const sub = await bus.subscribe(uniqueName('conn'), async () => {}, { group: uniqueName('g') });
        await waitFor(() => bus.health().status === 'up', timeoutMs, 'the second bus up');
        const open = names(bus);
        await waitFor(
          async () => {
            const series = await read();
            return open.every((name) => series.some((s) => s.labels.connection === name && s.value === 1));
          },
          timeoutMs,
          'a series at 1 for each connection of the second bus',
        );
        await sub.close();
        await bus.close();
        closed = true;
        // What only the closed bus had is gone; what the open bus shares by name is up, as that bus is.
        const kept = new Set(names(other));
        const series = await read();
        for (const name of open.filter((n) => !kept.has(n))) {
          expect(series.filter((s) => s.labels.connection === name)).toEqual([]);
        }
        expect(series.filter((s) => s.value !== 1)).toEqual([]);
        expect(other.health().status).toBe('up');
      } finally {
        if (!closed) await bus.close();
      }
    },
    timeoutMs * 3,
  );

  it(
    'counts success, retry and dead-letter, and the output parses',
    async () => {
      const { bus, registry } = watched;
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
    },
    timeoutMs * 3,
  );
}

/**
 * Consumer lag through `bus.lag()` and the Prometheus gauges, on transports
 * that measure it (MQTT cannot: see noLagTests).
 */
export function lagTests(connect: () => Promise<Bus>, timeoutMs = 15_000): void {
  const watched = watchedBus(connect);

  it(
    'reports the lag of a stalled group and its drain',
    async () => {
      const { bus, registry } = watched;
      const topic = uniqueName('lag');
      const group = uniqueName('g');
      let open!: () => void;
      const gate = new Promise<void>((resolve) => {
        open = resolve;
      });
      let done = 0;
      const sub = await bus.subscribe(
        topic,
        async () => {
          await gate;
          done++;
        },
        { group, concurrency: 1, prefetch: 1 },
      );
      try {
        const outstanding = async () => {
          const reading = (await bus.lag()).find((r) => r.topic === topic && r.group === group);
          return reading === undefined ? undefined : (reading.lag ?? 0) + (reading.pending ?? 0);
        };
        // Every transport this suite runs on measures lag: an empty reading is a failure, not a skip.
        expect((await bus.lag()).length).toBeGreaterThan(0);
        await bus.publishBatch(
          topic,
          [1, 2, 3, 4, 5].map((payload) => ({ payload })),
        );
        // Everything published is still owed to the group: not received yet, or received and unsettled.
        await waitFor(async () => ((await outstanding()) ?? 0) >= 4, timeoutMs, 'the lag of five unsettled messages');
        expect(await outstanding()).toBeLessThanOrEqual(5);
        const samples = parseExposition(await registry.metrics());
        const gauge =
          total(samples, 'busbar_consumer_lag', { topic, group }) +
          total(samples, 'busbar_consumer_pending', { topic, group });
        expect(gauge).toBeGreaterThanOrEqual(4);
        expect(gauge).toBeLessThanOrEqual(5);

        open();
        await waitFor(() => done === 5, timeoutMs, 'the five messages');
        await waitFor(async () => (await outstanding()) === 0, timeoutMs, 'the lag back to zero');
        const after = parseExposition(await registry.metrics());
        expect(
          total(after, 'busbar_consumer_lag', { topic, group }) +
            total(after, 'busbar_consumer_pending', { topic, group }),
        ).toBe(0);
      } finally {
        open();
        await sub.close();
      }
    },
    timeoutMs * 3,
  );
}

/** Transports that cannot measure lag (MQTT) report none, and no lag gauges appear. */
export function noLagTests(connect: () => Promise<Bus>, timeoutMs = 15_000): void {
  it(
    'reports no lag where the broker cannot measure it',
    async () => {
      const registry = new Registry();
      const metrics = registerBusbarMetrics({ registry });
      const bus = await connect();
      try {
        metrics.watch(bus);
        await bus.subscribe(uniqueName('nolag'), async () => {}, { group: uniqueName('g') });
        expect(await bus.lag()).toEqual([]);
        const samples = parseExposition(await registry.metrics());
        expect(samples.some((s) => s.name === 'busbar_consumer_lag')).toBe(false);
      } finally {
        metrics.unregister();
        await bus.close();
      }
    },
    timeoutMs,
  );
}
