import { type Bus, BusbarError } from '@busbar/core';
import { brokerAvailable, brokerUrls, createFaultProxy, sleep, uniqueName, waitFor } from '@busbar/testing';
import { afterEach, describe, expect, it } from 'vitest';
import { openBus } from './helpers.js';

const ok = await brokerAvailable('mqtt');
const target = new URL(brokerUrls.mqtt);

describe.runIf(ok)('mqtt: persistent sessions and ack after processing', () => {
  const cleanup: (() => Promise<unknown>)[] = [];
  afterEach(async () => {
    for (const fn of cleanup.splice(0).reverse()) await fn().catch(() => undefined);
  });

  it('does not PUBACK on receipt: a member that dies mid-handler gets the message back when its session resumes', async () => {
    const proxy = await createFaultProxy({ target: { host: target.hostname, port: Number(target.port || 1883) } });
    cleanup.push(() => proxy.close());
    const name = uniqueName('crash');
    const topic = `s.${uniqueName('t')}`;
    const group = uniqueName('g');
    const dying = await openBus({ url: proxy.url(brokerUrls.mqtt), name, closeTimeoutMs: 200 });
    cleanup.push(() => dying.close());
    let started = 0;
    await dying.subscribe(
      topic,
      () => {
        started++;
        return new Promise<void>(() => undefined);
      },
      { group },
    );
    const id = await dying.publish(topic, { n: 1 });
    await waitFor(() => started === 1, 5_000, 'the handler to start');
    // The process "dies": its connection goes away and cannot come back.
    proxy.refuse(60_000);
    // Closing it while cut off cannot ack anything (the handler never finished); it frees member number 0 in this process.
    await dying.close();

    const revived = await openBus({ name });
    cleanup.push(() => revived.close());
    const seen: { id: string; attempt: number }[] = [];
    await revived.subscribe(topic, async (m) => void seen.push({ id: m.id, attempt: m.attempt }), { group });
    await waitFor(() => seen.length === 1, 10_000, 'the redelivery');
    expect(seen[0]?.id).toBe(id);
  });

  it('a group member offline while messages are published receives them when it comes back', async () => {
    const name = uniqueName('off');
    const topic = `s.${uniqueName('t')}`;
    const group = uniqueName('g');
    const got = new Map<number, string[]>();
    const member = async (label: string): Promise<Bus> => {
      const bus = await openBus({ name });
      await bus.subscribe<{ n: number }>(
        topic,
        async (m) => {
          got.set(m.payload.n, [...(got.get(m.payload.n) ?? []), label]);
        },
        { group },
      );
      return bus;
    };
    const first = await member('first');
    cleanup.push(() => first.close());
    const second = await member('second');
    await second.close();
    // Member 1 is offline now; its persistent session stays in the shared subscription.
    const publisher = await openBus();
    cleanup.push(() => publisher.close());
    await publisher.publishBatch(
      topic,
      Array.from({ length: 100 }, (_, n) => ({ payload: { n } })),
    );
    await sleep(500);
    const beforeReturn = got.size;
    const back = await member('back');
    cleanup.push(() => back.close());
    await waitFor(() => got.size === 100, 10_000, 'all 100 messages');
    const fromBack = [...got.values()].filter((labels) => labels.includes('back')).length;
    // Mosquitto hands shared-subscription messages round-robin, offline sessions included.
    expect(beforeReturn).toBeLessThan(100);
    expect(fromBack).toBe(100 - beforeReturn);
    expect([...got.values()].every((labels) => labels.length === 1)).toBe(true);
  });

  it('declareGroup keeps messages for a group before any member subscribed', async () => {
    const name = uniqueName('decl');
    const topic = `s.${uniqueName('t')}`;
    const bus = await openBus({ name });
    cleanup.push(() => bus.close());
    const dead: string[] = [];
    // subscribeDeadLetters declares the reader group first; dead letters written before it are kept.
    await bus.subscribe(
      topic,
      async () => {
        throw new Error('always');
      },
      { group: 'g1', retry: false },
    );
    await bus.publish(topic, 'x');
    await sleep(500);
    await bus.subscribeDeadLetters(topic, 'g1', async (m) => void dead.push(String(m.payload)));
    await waitFor(() => dead.length === 1, 10_000, 'the dead letter');
    expect(dead).toEqual(['x']);
  });

  it('a publish the broker does not acknowledge in time rejects with a retryable TimeoutError', async () => {
    const proxy = await createFaultProxy({ target: { host: target.hostname, port: Number(target.port || 1883) } });
    cleanup.push(() => proxy.close());
    const bus = await openBus({ url: proxy.url(brokerUrls.mqtt), publishTimeoutMs: 500 });
    cleanup.push(() => bus.close());
    await bus.publish(`s.${uniqueName('t')}`, 1);
    proxy.blackhole(true);
    const started = Date.now();
    const error = await bus.publish(`s.${uniqueName('t')}`, 2).catch((e: unknown) => e);
    expect(BusbarError.is(error, 'BUSBAR_TIMEOUT')).toBe(true);
    expect((error as BusbarError).retryable).toBe(true);
    expect(Date.now() - started).toBeLessThan(3_000);
    proxy.blackhole(false);
  });
});
