import { BusbarError } from '@busbar/core';
import { brokerAvailable, collect, sleep, uniqueName } from '@busbar/testing';
import { afterAll, describe, expect, it } from 'vitest';
import { open, raw, testOptions } from './helpers.js';

const ok = await brokerAvailable('rabbitmq');

describe.runIf(ok)('rabbitmq options', () => {
  const exchanges: string[] = [];
  afterAll(async () => {
    await raw(async (ch) => {
      for (const name of exchanges) await ch.deleteExchange(name).catch(() => undefined);
    }).catch(() => undefined);
  });

  /** A bus on its own exchange, so exchange-level settings never clash with other tests. */
  const isolated = (extra: Record<string, unknown> = {}) => {
    const exchange = uniqueName('x');
    exchanges.push(exchange, `${exchange}.unroutable`);
    return open({ exchange, ...extra });
  };

  it('classic priority queues deliver higher publish priority first', async () => {
    const bus = await isolated({ queueType: 'classic', maxPriority: 10, priorityHeader: 'priority' });
    try {
      const topic = uniqueName('prio');
      const group = uniqueName('g');
      const first = await bus.subscribe(topic, async () => undefined, { group });
      await first.close();
      for (const p of ['1', '9', '5']) await bus.publish(topic, p, { headers: { priority: p } });
      const got = collect<string>();
      await bus.subscribe(topic, async (m) => void got.push(m.payload as string), { group });
      await got.waitForCount(3, 5_000);
      expect(got.items).toEqual(['9', '5', '1']);
      const info = await raw((ch) => ch.checkQueue(`${topic}.${group}`));
      expect(info.queue).toBe(`${topic}.${group}`);
    } finally {
      await bus.close();
    }
  });

  it('a full group queue (maxLength, reject-publish) makes publish reject instead of dropping', async () => {
    // Classic queues enforce the limit exactly; quorum queues may overshoot it by a message or so.
    const bus = await isolated({ maxLength: 2, queueType: 'classic' });
    try {
      const topic = uniqueName('full');
      const group = uniqueName('g');
      await (await bus.subscribe(topic, async () => undefined, { group })).close();
      await bus.publish(topic, 1);
      await bus.publish(topic, 2);
      const error = await bus.publish(topic, 3).catch((e) => e);
      expect(BusbarError.is(error, 'BUSBAR_PUBLISH')).toBe(true);
      expect(String(error.message)).toContain('nacked');
    } finally {
      await bus.close();
    }
  });

  it('messageTtlMs sets a per-message expiration', async () => {
    const bus = await isolated({ messageTtlMs: 100, queueType: 'classic' });
    try {
      const topic = uniqueName('ttl');
      const group = uniqueName('g');
      await (await bus.subscribe(topic, async () => undefined, { group })).close();
      await bus.publish(topic, 'gone');
      await sleep(300);
      const left = await raw((ch) => ch.checkQueue(`${topic}.${group}`));
      expect(left.messageCount).toBe(0);
    } finally {
      await bus.close();
    }
  });

  for (const exchangeType of ['direct', 'fanout', 'headers'] as const) {
    it(`exchangeType '${exchangeType}' routes to groups (no wildcards)`, async () => {
      const bus = await isolated({ exchangeType });
      try {
        expect(bus.capabilities.wildcards).toBe(false);
        const topic = uniqueName(exchangeType);
        const other = uniqueName('other');
        const group = uniqueName('g');
        const got = collect<string>();
        await bus.subscribe(topic, async (m) => void got.push(m.topic), { group });
        await bus.publish(topic, 1);
        await bus.publish(other, 2);
        await got.waitForCount(1, 5_000);
        await sleep(200);
        // fanout ignores the topic: the group gets both.
        expect(got.items).toEqual(exchangeType === 'fanout' ? [topic, other] : [topic]);
        await expect(bus.subscribe(`${topic}.*`, async () => undefined, { group })).rejects.toMatchObject({
          code: 'BUSBAR_UNSUPPORTED',
        });
      } finally {
        await bus.close();
      }
    });
  }

  it('queueExpiresMs sets x-expires on group queues', async () => {
    // The value every test bus uses: another one would redeclare the exchange's shared unroutable queue with
    // other arguments, and the broker refuses that for every other test bus until the queue expires.
    const bus = await open({ queueExpiresMs: testOptions.queueExpiresMs });
    try {
      const topic = uniqueName('exp');
      const group = uniqueName('g');
      await (await bus.subscribe(topic, async () => undefined, { group })).close();
      // The broker refuses an equivalent declaration without the argument, naming it.
      const error = await raw((ch) =>
        ch.assertQueue(`${topic}.${group}`, { durable: true, arguments: { 'x-queue-type': 'quorum' } }),
      ).catch((e) => e);
      expect(String(error?.message)).toContain('x-expires');
    } finally {
      await bus.close();
    }
  });

  it('a group queue declared with other arguments fails the subscribe with a ConfigError', async () => {
    const topic = uniqueName('mismatch');
    const group = uniqueName('g');
    const quorum = await open();
    const classic = await open({ queueType: 'classic' });
    try {
      await (await quorum.subscribe(topic, async () => undefined, { group })).close();
      const error = await classic.subscribe(topic, async () => undefined, { group }).catch((e) => e);
      expect(BusbarError.is(error, 'BUSBAR_CONFIG')).toBe(true);
      expect(String(error.message)).toContain('PRECONDITION_FAILED');
    } finally {
      await Promise.all([quorum.close(), classic.close()]);
    }
  });
});
