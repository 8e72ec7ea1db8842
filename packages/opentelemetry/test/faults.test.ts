import { connect, silentLogger } from '@busbar/core';
import { driver } from '@busbar/redis';
import { brokerAvailable, brokerUrls, createFaultProxy, uniqueName } from '@busbar/testing';
import { SpanKind, SpanStatusCode } from '@opentelemetry/api';
import { describe, expect, it } from 'vitest';
import { useTracing } from './tracing-suite.js';

const ok = await brokerAvailable('redis');

describe.runIf(ok)('a failed publish on redis', () => {
  const harness = useTracing();

  it('ends its producer span with an error when the broker never confirms', async () => {
    const target = new URL(brokerUrls.redis);
    const proxy = await createFaultProxy({ target: { host: target.hostname, port: Number(target.port || 6379) } });
    const bus = await connect({
      url: proxy.url(brokerUrls.redis),
      driver,
      logger: silentLogger,
      publishTimeoutMs: 300,
    });
    try {
      const topic = uniqueName('fail');
      await bus.publish(topic, 'ok');
      proxy.blackhole(true);
      const error = await bus.publish(topic, 'lost').catch((e: unknown) => e as Error);
      expect(error).toBeInstanceOf(Error);
      const producers = harness.spans(topic).filter((s) => s.kind === SpanKind.PRODUCER);
      expect(producers).toHaveLength(2);
      const failed = producers.find((s) => s.status.code === SpanStatusCode.ERROR);
      expect(failed?.attributes['error.type']).toBe(error instanceof Error ? error.name : undefined);
      expect(failed?.events.some((e) => e.name === 'exception')).toBe(true);
      expect(producers.filter((s) => s.status.code === SpanStatusCode.UNSET)).toHaveLength(1);
    } finally {
      proxy.blackhole(false);
      await bus.close().catch(() => undefined);
      await proxy.close();
    }
  });
});
