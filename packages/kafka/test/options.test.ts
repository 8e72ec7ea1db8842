import { BusbarError, connect, silentLogger } from '@busbar/core';
import { brokerAvailable, brokerUrls, uniqueName } from '@busbar/testing';
import { describe, expect, it } from 'vitest';
import { driver, retryTopicFor } from '../src/index.js';

const code = (p: Promise<unknown>) =>
  p.then(
    () => 'resolved',
    (e: unknown) => (BusbarError.is(e) ? e.code : `untyped: ${String(e)}`),
  );

describe('kafka options', () => {
  const url = 'kafka://127.0.0.1:1';
  it.each([
    ['unknown option', { bogus: true }],
    ['zero partitions', { partitions: 0 }],
    ['bad broker address', { brokers: ['no-port'] }],
    ['unknown tls field', { tls: { ca: 'x', bogus: 1 } }],
    ['unknown sasl mechanism', { saslMechanism: 'kerberos' }],
    ['sasl without credentials', { saslMechanism: 'scram-sha-256' }],
    ['unregistered compression codec', { compression: 'snappy' }],
    ['tiny maxMessageBytes', { maxMessageBytes: 10 }],
  ])('rejects %s with BUSBAR_CONFIG before connecting', async (_label, options) => {
    expect(await code(connect({ url, driver, logger: silentLogger, connectTimeoutMs: 500, ...options }))).toBe(
      'BUSBAR_CONFIG',
    );
  });

  it('fails to connect to nothing with a BUSBAR_CONNECTION error that hides the password', async () => {
    const error = await connect({
      url: 'kafka://user:hunter2-secret@127.0.0.1:1',
      driver,
      logger: silentLogger,
      connectTimeoutMs: 1_000,
    }).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(BusbarError.is(error, 'BUSBAR_CONNECTION')).toBe(true);
    expect(`${String(error)} ${(error as Error).stack} ${JSON.stringify(error)}`).not.toContain('hunter2-secret');
  });

  it('names retry topics per group and keeps them within Kafka limits', () => {
    expect(retryTopicFor('orders.created', 'payments')).toBe('orders.created.payments.retry');
    const long = retryTopicFor('t'.repeat(240), 'group');
    expect(long.length).toBeLessThanOrEqual(249);
    expect(long.endsWith('.retry')).toBe(true);
    expect(retryTopicFor('t'.repeat(240), 'other')).not.toBe(long);
  });
});

const ok = await brokerAvailable('kafka');

describe.runIf(ok)('kafka bad input', () => {
  it('takes a seed list and skips a dead seed', async () => {
    const { host } = new URL(brokerUrls.kafka);
    const bus = await connect({ url: `kafka://127.0.0.1:1,${host}`, driver, logger: silentLogger });
    try {
      expect(await code(bus.publish(uniqueName('seeds'), 'hello'))).toBe('resolved');
    } finally {
      await bus.close();
    }
  });

  it('rejects a payload over maxMessageBytes before sending, and accepts one just under', async () => {
    const bus = await connect({ url: brokerUrls.kafka, driver, logger: silentLogger, maxMessageBytes: 100_000 });
    try {
      const topic = uniqueName('big');
      expect(await code(bus.publish(topic, 'x'.repeat(100_000)))).toBe('BUSBAR_PAYLOAD_TOO_LARGE');
      expect(await code(bus.publish(topic, 'x'.repeat(95_000)))).toBe('resolved');
    } finally {
      await bus.close();
    }
  });

  it('a message as large as the broker default (1 MB) is refused before sending with default options', async () => {
    const bus = await connect({ url: brokerUrls.kafka, driver, logger: silentLogger });
    try {
      expect(await code(bus.publish(uniqueName('big'), 'x'.repeat(1_048_576)))).toBe('BUSBAR_PAYLOAD_TOO_LARGE');
      expect(await code(bus.publish(uniqueName('big'), 'x'.repeat(990_000)))).toBe('resolved');
    } finally {
      await bus.close();
    }
  });
});
