import { BusbarError, type Message } from '@busbar/core';
import { brokerAvailable, brokerUrls, collect, createFaultProxy, uniqueName, waitFor } from '@busbar/testing';
import amqplib from 'amqplib';
import { afterAll, describe, expect, it } from 'vitest';
import { open, raw, testOptions } from './helpers.js';

const ok = await brokerAvailable('rabbitmq');

/** Exchanges and queues this file declares by hand (busbar never deletes them): removed at the end. */
const exchanges: string[] = [];
const queues: string[] = [];

afterAll(async () => {
  if (!ok) return;
  await raw(async (channel) => {
    for (const queue of queues) await channel.deleteQueue(queue).catch(() => undefined);
    for (const exchange of exchanges) await channel.deleteExchange(exchange).catch(() => undefined);
  });
});

/** Another application publishing with plain amqplib, confirmed (nothing in flight when it returns). */
async function theirs(work: (channel: amqplib.ConfirmChannel) => void): Promise<void> {
  const conn = await amqplib.connect(brokerUrls.rabbitmq);
  try {
    const channel = await conn.createConfirmChannel();
    work(channel);
    await channel.waitForConfirms();
  } finally {
    await conn.close().catch(() => undefined);
  }
}

/** Another application's exchange: a plain durable topic exchange, no alternate exchange. */
async function plainExchange(): Promise<string> {
  const name = uniqueName('their-exchange');
  // The default topology declares the alternate exchange before it fails on theirs.
  exchanges.push(name, `${name}.unroutable`);
  await raw((channel) => channel.assertExchange(name, 'topic', { durable: true }).then(() => undefined));
  return name;
}

/** Another application's classic queue (no arguments at all) under the name busbar gives a group. */
async function classicQueue(name: string): Promise<void> {
  queues.push(name);
  await raw((channel) => channel.assertQueue(name, { durable: true }).then(() => undefined));
}

describe.runIf(ok)('rabbitmq: an exchange that already exists without the alternate exchange', () => {
  it("the default topology fails with a ConfigError naming the exchange and 'alternate-exchange'", async () => {
    const exchange = await plainExchange();
    const error = await open({ exchange }).then(
      async (bus) => {
        await bus.close();
        return undefined;
      },
      (e: unknown) => e,
    );
    expect(BusbarError.is(error, 'BUSBAR_CONFIG')).toBe(true);
    expect((error as Error).message).toContain(`exchange '${exchange}'`);
    expect((error as Error).message).toContain("argument 'alternate-exchange'");
    expect((error as Error).message).toContain("topology: 'existing'");
    // The refused declaration left nothing broken: a bus on the same exchange in 'existing' mode works.
    const bus = await open({ exchange, topology: 'existing' });
    try {
      const topic = uniqueName('t');
      const got = collect<string>();
      await bus.subscribe(topic, async (m) => void got.push(m.id), { group: uniqueName('g') });
      const id = await bus.publish(topic, { a: 1 });
      await waitFor(() => got.items.includes(id), 5_000, 'round trip after the refusal');
    } finally {
      await bus.close();
    }
  });

  it('re-declared under a running bus: publishes fail with that ConfigError, not a timeout; fine once fixed', async () => {
    const target = new URL(brokerUrls.rabbitmq);
    const proxy = await createFaultProxy({ target: { host: target.hostname, port: Number(target.port || 5672) } });
    const exchange = uniqueName('redeclared');
    exchanges.push(exchange, `${exchange}.unroutable`);
    const bus = await open({ exchange, publishTimeoutMs: 10_000 }, proxy.url(brokerUrls.rabbitmq));
    try {
      const topic = uniqueName('t');
      const got = collect<string>();
      await bus.subscribe(topic, async (m) => void got.push(m.id), { group: uniqueName('g') });
      // Someone replaces the exchange with a plain one; busbar's next declaration (after a reconnect) is refused.
      await raw(async (channel) => {
        await channel.deleteExchange(exchange);
        await channel.assertExchange(exchange, 'topic', { durable: true });
      });
      proxy.cutAll();
      await waitFor(() => bus.health().status !== 'up', 5_000, 'the cut noticed');
      const started = Date.now();
      const error = await bus.publish(topic, 1).catch((e: unknown) => e);
      expect(BusbarError.is(error, 'BUSBAR_CONFIG')).toBe(true);
      expect((error as Error).message).toContain("argument 'alternate-exchange'");
      expect(Date.now() - started).toBeLessThan(5_000);
      // Fixed (the plain exchange removed): busbar declares its own again and publishing works.
      await raw((channel) => channel.deleteExchange(exchange).then(() => undefined));
      let id: string | undefined;
      await waitFor(
        async () => {
          id = await bus.publish(topic, 2).catch(() => undefined);
          return id !== undefined;
        },
        10_000,
        'publishing after the fix',
      );
      // The group's binding went with the deleted exchange: subscribe again to see the round trip.
      const again = collect<string>();
      await bus.subscribe(topic, async (m) => void again.push(m.id), { group: uniqueName('g') });
      const last = await bus.publish(topic, 3);
      await waitFor(() => again.items.includes(last), 5_000, 'round trip after the fix');
    } finally {
      await bus.close();
      await proxy.close();
    }
  });

  it("topology 'existing' binds to it: round trip, a raw producer reaches busbar, an unroutable publish rejects", async () => {
    const exchange = await plainExchange();
    const bus = await open({ exchange, topology: 'existing' });
    try {
      const topic = uniqueName('t');
      const got = collect<Message<unknown>>();
      await bus.subscribe(topic, async (m) => void got.push(m), { group: uniqueName('g') });
      const id = await bus.publish(topic, { a: 1 });
      await theirs((channel) => {
        channel.publish(exchange, topic, Buffer.from('{"b":2}'), { messageId: 'from-them' });
      });
      await got.waitForCount(2, 5_000);
      expect(got.items.map((m) => m.id).sort()).toEqual([id, 'from-them'].sort());
      // busbar declared no alternate exchange on their exchange: a message nobody is bound for is refused.
      const unroutable = await bus.publish(uniqueName('nobody'), 1).catch((e: unknown) => e);
      expect(BusbarError.is(unroutable, 'BUSBAR_PUBLISH')).toBe(true);
      expect((unroutable as BusbarError).retryable).toBe(false);
      const again = await bus.publish(topic, { c: 3 });
      await waitFor(() => got.items.some((m) => m.id === again), 5_000, 'round trip after the unroutable one');
    } finally {
      await bus.close();
    }
  });

  it('an unknown topology value is a ConfigError naming the option', async () => {
    const error = await open({ topology: 'passive' }).catch((e: unknown) => e);
    expect(BusbarError.is(error, 'BUSBAR_CONFIG')).toBe(true);
    expect((error as Error).message).toContain('topology');
  });

  it("topology 'existing' on an exchange that does not exist is a ConfigError naming it", async () => {
    const exchange = uniqueName('missing-exchange');
    const error = await open({ exchange, topology: 'existing' }).catch((e: unknown) => e);
    expect(BusbarError.is(error, 'BUSBAR_CONFIG')).toBe(true);
    expect((error as Error).message).toContain(`'${exchange}'`);
  });
});

describe.runIf(ok)('rabbitmq: a classic queue that already exists for a group', () => {
  it("the default topology refuses it naming the queue and 'x-queue-type'; the bus keeps working", async () => {
    const bus = await open();
    try {
      const topic = uniqueName('t');
      const group = uniqueName('g');
      await classicQueue(`${topic}.${group}`);
      const error = await bus.subscribe(topic, async () => undefined, { group }).catch((e: unknown) => e);
      expect(BusbarError.is(error, 'BUSBAR_CONFIG')).toBe(true);
      expect((error as Error).message).toContain(`queue '${topic}.${group}'`);
      // The broker names the first argument that differs (the test buses also set x-expires).
      expect((error as Error).message).toMatch(/argument '(x-queue-type|x-expires)'/);
      expect((error as Error).message).toContain("topology: 'existing'");
      // No broken channel behind: another group subscribes, publishes are confirmed and delivered.
      const got = collect<string>();
      await bus.subscribe(topic, async (m) => void got.push(m.id), { group: uniqueName('g') });
      const id = await bus.publish(topic, 'after');
      await waitFor(() => got.items.includes(id), 5_000, 'round trip after the refused subscribe');
      expect(bus.health().status).toBe('up');
    } finally {
      await bus.close();
    }
  });

  it("topology 'existing' consumes it as it is: messages already in it, new ones, and a retry", async () => {
    const topic = uniqueName('t');
    const group = uniqueName('g');
    const queue = `${topic}.${group}`;
    await classicQueue(queue);
    // Left there by the application that owns the queue before busbar came.
    await theirs((channel) => {
      channel.sendToQueue(queue, Buffer.from('"waiting"'), { messageId: 'waiting', contentType: 'application/json' });
    });
    const bus = await open({ topology: 'existing' });
    try {
      const got = collect<{ id: string; attempt: number; payload: unknown }>();
      let failed = false;
      await bus.subscribe(
        topic,
        async (m) => {
          got.push({ id: m.id, attempt: m.attempt, payload: m.payload });
          if (m.payload === 'retry me' && !failed) {
            failed = true;
            throw new Error('once');
          }
        },
        { group, retry: { maxAttempts: 3, initialDelayMs: 10, maxDelayMs: 10 } },
      );
      const id = await bus.publish(topic, 'retry me');
      await waitFor(() => got.items.filter((m) => m.id === id).length === 2, 10_000, 'the retry');
      expect(got.items.find((m) => m.id === 'waiting')?.payload).toBe('waiting');
      expect(got.items.filter((m) => m.id === id).map((m) => m.attempt)).toEqual([1, 2]);
      // The queue is still the classic one without arguments it was.
      const info = await raw((channel) => channel.checkQueue(queue));
      expect(info.queue).toBe(queue);
    } finally {
      await bus.close();
    }
  });

  it("topology 'existing' declares busbar's own queue for a group that has none yet", async () => {
    const bus = await open({ topology: 'existing', exchange: testOptions.exchange });
    try {
      const topic = uniqueName('t');
      const got = collect<string>();
      await bus.subscribe(topic, async (m) => void got.push(m.id), { group: uniqueName('g') });
      const id = await bus.publish(topic, 1);
      await waitFor(() => got.items.includes(id), 5_000, 'round trip on a new group');
    } finally {
      await bus.close();
    }
  });
});
