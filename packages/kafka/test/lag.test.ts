import { connect, silentLogger } from '@busbar/core';
import { brokerAvailable, brokerUrls, uniqueName } from '@busbar/testing';
import { describe, expect, it } from 'vitest';
import { driver } from '../src/index.js';
import type { KafkaTransport } from '../src/transport.js';

const ok = await brokerAvailable('kafka');

describe.runIf(ok)('kafka lag', () => {
  it('reports what a declared group has not consumed yet', async () => {
    let transport: KafkaTransport | undefined;
    const bus = await connect({
      url: brokerUrls.kafka,
      logger: silentLogger,
      driver: {
        ...driver,
        create: (context) => {
          transport = driver.create(context as Parameters<typeof driver.create>[0]) as KafkaTransport;
          return transport;
        },
      },
    });
    try {
      const topic = uniqueName('lag');
      const group = uniqueName('g');
      const t = transport as KafkaTransport;
      expect(await t.lag(topic, group)).toBeUndefined();
      await t.declareGroup(topic, group);
      await bus.publishBatch(
        topic,
        Array.from({ length: 25 }, (_, n) => ({ payload: n, key: `k${n % 4}` })),
      );
      expect(await t.lag(topic, group)).toEqual({ lag: 25 });
      let handled = 0;
      const sub = await bus.subscribe(topic, async () => void handled++, { group });
      for (let i = 0; i < 100 && (await t.lag(topic, group))?.lag !== 0; i++)
        await new Promise((r) => setTimeout(r, 100));
      expect(await t.lag(topic, group)).toEqual({ lag: 0 });
      expect(handled).toBe(25);
      await sub.close();
    } finally {
      await bus.close();
    }
  }, 60_000);
});
