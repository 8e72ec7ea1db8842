import { BusbarError, type Message, PermanentError } from '@busbar/core';
import { brokerAvailable, brokerUrls, collect, uniqueName, waitFor } from '@busbar/testing';
import { describe, expect, it } from 'vitest';
import { open, raw } from './helpers.js';

const ok = await brokerAvailable('rabbitmq');

describe.runIf(ok)('rabbitmq transport', () => {
  it('publishes with confirms and delivers to a group with id, key, headers and timestamp', async () => {
    const bus = await open();
    try {
      const topic = uniqueName('orders');
      const group = uniqueName('g');
      const got: Message<unknown>[] = [];
      await bus.subscribe(topic, async (m) => void got.push(m), { group });
      const before = Math.floor(Date.now() / 1000) * 1000;
      const id = await bus.publish(topic, { n: 1 }, { key: 'k1', headers: { tenant: 'acme' } });
      await waitFor(() => got.length === 1, 5_000);
      const m = got[0] as Message<unknown>;
      expect(m.id).toBe(id);
      expect(m.key).toBe('k1');
      expect(m.headers).toEqual({ tenant: 'acme' });
      expect(m.payload).toEqual({ n: 1 });
      expect(m.attempt).toBe(1);
      expect(m.timestamp.getTime()).toBeGreaterThanOrEqual(before);
      const props = (m.raw as { properties: { deliveryMode: number; messageId: string; contentType: string } })
        .properties;
      expect(props.deliveryMode).toBe(2);
      expect(props.messageId).toBe(id);
      expect(props.contentType).toBe('application/json');
    } finally {
      await bus.close();
    }
  });

  it('declares a durable quorum queue per group bound by the topic; wildcards match', async () => {
    const bus = await open();
    try {
      const base = uniqueName('w');
      const group = uniqueName('g');
      const got = collect<string>();
      await bus.subscribe(`${base}.*`, async (m) => got.push(m.topic), { group });
      await bus.publish(`${base}.a`, 1);
      await bus.publish(`${base}.b`, 2);
      await bus.publish(`${base}.a.deep`, 3);
      await got.waitForCount(2, 5_000);
      await new Promise((r) => setTimeout(r, 100));
      expect([...got.items].sort()).toEqual([`${base}.a`, `${base}.b`]);
      const info = await raw((ch) => ch.checkQueue(`${base}.*.${group}`));
      expect(info.queue).toBe(`${base}.*.${group}`);
    } finally {
      await bus.close();
    }
  });

  it("unroutable: 'error' rejects an unroutable publish (mandatory + basic.return) instead of losing it", async () => {
    const exchange = uniqueName('x-err');
    const bus = await open({ exchange, unroutable: 'error' });
    try {
      const error = await bus.publish(uniqueName('nobody'), 1).catch((e) => e);
      expect(BusbarError.is(error, 'BUSBAR_PUBLISH')).toBe(true);
      expect(String(error.message)).toContain('unroutable');
      expect(error.retryable).toBe(false);
      // A routable publish on the same channel still works after a return.
      const topic = uniqueName('t');
      const group = uniqueName('g');
      const got = collect<number>();
      await bus.subscribe(topic, async (m) => void got.push(m.payload as number), { group });
      await bus.publish(topic, 7);
      await got.waitForCount(1, 5_000);
    } finally {
      await bus.close();
      await raw((ch) => ch.deleteExchange(exchange));
    }
  });

  it("unroutable: 'alternate-exchange' (default) keeps unroutable messages in '<exchange>.unroutable'", async () => {
    const exchange = uniqueName('x-ae');
    const bus = await open({ exchange });
    try {
      const id = await bus.publish(uniqueName('nobody'), 1);
      const kept = await raw(async (ch) => {
        const m = await ch.get(`${exchange}.unroutable`, { noAck: true });
        return m === false ? undefined : m.properties.messageId;
      });
      expect(kept).toBe(id);
    } finally {
      await bus.close();
      await raw(async (ch) => {
        await ch.deleteExchange(exchange);
        await ch.deleteExchange(`${exchange}.unroutable`);
      });
    }
  });

  it('retries through a delay queue back to the group only, then dead-letters with metadata', async () => {
    const bus = await open();
    try {
      const topic = uniqueName('r');
      const group = uniqueName('g');
      const other = uniqueName('o');
      const attempts: number[] = [];
      const otherSeen = collect<number>();
      await bus.subscribe(topic, async (m) => void otherSeen.push(m.attempt), { group: other });
      await bus.subscribe(
        topic,
        async (m) => {
          attempts.push(m.attempt);
          throw new Error(`boom ${m.attempt}`);
        },
        { group, retry: { maxAttempts: 3, initialDelayMs: 20, maxDelayMs: 50, jitter: 0 } },
      );
      const started = Date.now();
      const id = await bus.publish(topic, { x: 1 }, { key: 'k' });
      const dead = collect<Message<unknown>>();
      await bus.subscribeDeadLetters(topic, group, async (m) => void dead.push(m));
      await dead.waitForCount(1, 10_000);
      expect(attempts).toEqual([1, 2, 3]);
      expect(Date.now() - started).toBeGreaterThanOrEqual(30);
      const d = dead.items[0] as Message<unknown>;
      expect(d.id).toBe(id);
      expect(d.key).toBe('k');
      expect(d.payload).toEqual({ x: 1 });
      expect(d.deadLetter?.attempts).toBe(3);
      expect(d.deadLetter?.errorMessage).toBe('boom 3');
      expect(d.deadLetter?.topic).toBe(topic);
      expect(d.topic).toBe(`${topic}.${group}.dlq`);
      // The other group saw the message once: retries go back to the failing group only.
      await otherSeen.waitForCount(1, 5_000);
      await new Promise((r) => setTimeout(r, 200));
      expect(otherSeen.items).toEqual([1]);
    } finally {
      await bus.close();
    }
  });

  it('dead-letters a PermanentError at once and re-drives it', async () => {
    const bus = await open();
    try {
      const topic = uniqueName('p');
      const group = uniqueName('g');
      let fail = true;
      const seen = collect<number>();
      await bus.subscribe(
        topic,
        async (m) => {
          seen.push(m.attempt);
          if (fail) throw new PermanentError('no');
        },
        { group },
      );
      await bus.publish(topic, 1);
      await seen.waitForCount(1, 5_000);
      await new Promise((r) => setTimeout(r, 300));
      fail = false;
      const moved = await bus.redrive(topic, group, { idleMs: 500 });
      expect(moved).toBe(1);
      await seen.waitForCount(2, 5_000);
      expect(seen.items).toEqual([1, 1]);
    } finally {
      await bus.close();
    }
  });

  it('broadcast subscriptions each get every message on exclusive queues', async () => {
    const bus = await open();
    try {
      const topic = uniqueName('b');
      const a = collect<number>();
      const b = collect<number>();
      await bus.subscribe(topic, async (m) => void a.push(m.payload as number));
      await bus.subscribe(topic, async (m) => void b.push(m.payload as number));
      await bus.publishBatch(topic, [{ payload: 1 }, { payload: 2 }]);
      await a.waitForCount(2, 5_000);
      await b.waitForCount(2, 5_000);
      expect(a.items).toEqual([1, 2]);
      expect(b.items).toEqual([1, 2]);
    } finally {
      await bus.close();
    }
  });

  it('rejects bad names and options with typed errors before sending', async () => {
    const bus = await open();
    try {
      await expect(bus.publish('amq.x', 1)).rejects.toMatchObject({ code: 'BUSBAR_INVALID_TOPIC' });
      const long = Array.from({ length: 20 }, () => 'abcdefghij')
        .join('.')
        .slice(0, 240);
      await expect(bus.subscribe(long, async () => undefined, { group: 'g'.repeat(40) })).rejects.toMatchObject({
        code: 'BUSBAR_INVALID_TOPIC',
      });
      await expect(bus.publish('t', 'x'.repeat(17 * 1024 * 1024))).rejects.toMatchObject({
        code: 'BUSBAR_PAYLOAD_TOO_LARGE',
      });
    } finally {
      await bus.close();
    }
    await expect(open({ queueType: 'stream' })).rejects.toMatchObject({ code: 'BUSBAR_CONFIG' });
    await expect(open({ nope: 1 })).rejects.toMatchObject({ code: 'BUSBAR_CONFIG' });
    await expect(open({ maxPriority: 5 })).rejects.toMatchObject({ code: 'BUSBAR_CONFIG' });
  });

  it('never shows the password; a wrong one fails fast with a ConnectionError that is not retryable', async () => {
    const started = Date.now();
    const wrong = new URL(brokerUrls.rabbitmq);
    wrong.password = 's3cret-pw';
    const error = await open({}, wrong.toString()).catch((e) => e);
    expect(BusbarError.is(error, 'BUSBAR_CONNECTION')).toBe(true);
    // The same credentials are refused again: a caller's retry loop must not keep trying them.
    expect(error.retryable).toBe(false);
    expect(JSON.stringify({ m: error.message, s: error.stack, c: String(error.cause?.message) })).not.toContain(
      's3cret-pw',
    );
    expect(Date.now() - started).toBeLessThan(5_000);
  });

  it('reports the lag of a group (ready messages in its queue)', async () => {
    const bus = await open();
    let release!: () => void;
    const blocked = new Promise<void>((resolve) => {
      release = resolve;
    });
    try {
      const topic = uniqueName('lag');
      const group = uniqueName('g');
      const started = collect<number>();
      await bus.subscribe(
        topic,
        async (m) => {
          started.push(m.payload as number);
          await blocked;
        },
        { group, prefetch: 1 },
      );
      await bus.publishBatch(
        topic,
        Array.from({ length: 5 }, (_, n) => ({ payload: n })),
      );
      await started.waitForCount(1, 5_000);
      // One is with the blocked handler (prefetch 1), four wait in the queue.
      expect(await bus.lag()).toEqual([{ topic, group, lag: 4 }]);
    } finally {
      release();
      await bus.close();
    }
  });

  it('reports health up', async () => {
    const bus = await open();
    try {
      expect(bus.health().status).toBe('up');
      expect(bus.health().connections.map((c) => c.name)).toContain('publisher');
    } finally {
      await bus.close();
    }
    expect(bus.health().status).toBe('down');
  });
});
