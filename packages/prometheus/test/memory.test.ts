import { connect, silentLogger } from '@busbar/core';
import { memoryFaults } from '@busbar/core/transport';
import { uniqueName, waitFor } from '@busbar/testing';
import { Registry } from 'prom-client';
import { describe, expect, it } from 'vitest';
import { registerBusbarMetrics } from '../src/index.js';
import { counterTests, lagTests } from './counters-suite.js';
import { parseExposition, total } from './exposition.js';

const memory = () => connect({ url: `memory://${uniqueName('prom')}`, logger: silentLogger });

describe('prometheus counters on memory://', () => {
  counterTests(memory);
  lagTests(memory);
});

describe('a refused dead-letter write', () => {
  it('is counted as dead_letter_failed, then dead_letter once written', async () => {
    const name = uniqueName('prom-refuse');
    const registry = new Registry();
    const metrics = registerBusbarMetrics({ registry });
    const bus = await connect({ url: `memory://${name}`, logger: silentLogger });
    metrics.watch(bus);
    try {
      const topic = uniqueName('refuse');
      const restore = memoryFaults(name).refuse(`${topic}.g.dlq`);
      await bus.subscribe(
        topic,
        () => {
          throw new Error('always');
        },
        { group: 'g', retry: false },
      );
      await bus.publish(topic, 1);
      const count = async (status: string) =>
        total(parseExposition(await registry.metrics()), 'busbar_messages_processed_total', { topic, status });
      await waitFor(async () => (await count('dead_letter_failed')) === 1, 5_000, 'one refused write counted');
      restore();
      await waitFor(async () => (await count('dead_letter')) === 1, 10_000, 'the dead letter counted');
      expect(await count('dead_letter_failed')).toBe(1);
    } finally {
      metrics.unregister();
      await bus.close();
    }
  });
});
