import type { Message } from '@busbar/core';
import { MAX_TIMER_MS } from '@busbar/core/transport';
import { brokerAvailable, sleep, uniqueName, waitFor } from '@busbar/testing';
import { afterEach, describe, expect, it } from 'vitest';
import { retryProperties } from '../src/delivery.js';
import { openBus, rawClient } from './helpers.js';

const ok = await brokerAvailable('mqtt');

describe('mqtt: retry due times', () => {
  it('never schedules a retry further ahead than the longest Node timer', () => {
    const fields = { id: 'i', idGenerated: false, key: undefined, timestamp: 1, attempt: 1, body: new Uint8Array() };
    const due = (delayMs: number) =>
      Number(retryProperties('t', fields, { delayMs, attempt: 2, headers: {} }, 1_000)['busbar-due']);
    expect(due(500)).toBe(1_500);
    expect(due(2 ** 31 + 5)).toBe(1_000 + MAX_TIMER_MS);
    expect(due(Number.POSITIVE_INFINITY)).toBe(1_000 + MAX_TIMER_MS);
    expect(due(Number.NaN)).toBe(1_000);
    expect(due(-5)).toBe(1_000);
  });
});

/** Messages from a raw mqtt.js client (another MQTT producer) that busbar did not write. */
describe.runIf(ok)('mqtt: messages from foreign MQTT clients', () => {
  const cleanup: (() => Promise<unknown>)[] = [];
  afterEach(async () => {
    for (const fn of cleanup.splice(0).reverse()) await fn().catch(() => undefined);
  });

  it('a retained foreign message is not run again by every member that joins a group', async () => {
    const topic = uniqueName('retained');
    const raw = await rawClient();
    cleanup.push(() => raw.client.publishAsync(topic, '', { qos: 1, retain: true }).then(() => raw.client.endAsync()));
    await raw.client.publishAsync(topic, '"state"', { qos: 1, retain: true });
    const group = uniqueName('g');
    const handled: string[] = [];
    for (let member = 0; member < 3; member++) {
      const bus = await openBus({ name: uniqueName(`ret${member}`), sessionExpirySeconds: 60 });
      cleanup.push(() => bus.close());
      await bus.subscribe(topic, (m) => void handled.push(m.id), { group });
      await sleep(300);
    }
    // A broadcast subscription does get it (MQTT's retained "current state").
    const watcher = await openBus({ name: uniqueName('retw') });
    cleanup.push(() => watcher.close());
    const seen: unknown[] = [];
    await watcher.subscribe(topic, (m) => void seen.push(m.payload));
    await waitFor(() => seen.length === 1, 10_000, 'the retained message on a broadcast subscription');
    expect(seen).toEqual(['state']);
    expect(handled).toEqual([]);
  });

  it('maps topic names that are no busbar topic predictably, and retries and dead-letters them', async () => {
    const root = uniqueName('odd');
    const bus = await openBus({ name: uniqueName('oddbus'), sessionExpirySeconds: 60 });
    const raw = await rawClient();
    cleanup.push(
      () => bus.close(),
      () => raw.client.endAsync(),
    );
    const seen: { topic: string; attempt: number }[] = [];
    await bus.subscribe(
      `${root}.#`,
      async (m) => {
        seen.push({ topic: m.topic, attempt: m.attempt });
        throw new Error('always fails');
      },
      { group: 'g', retry: { maxAttempts: 2, initialDelayMs: 50, maxDelayMs: 50 } },
    );
    const dead: Message<unknown>[] = [];
    await bus.subscribeDeadLetters(`${root}.#`, 'g', async (m) => void dead.push(m));
    const names = {
      [`${root}/b c/d`]: `${root}.b c.d`,
      [`${root}//b`]: `${root}..b`,
      [`${root}/b.c`]: `${root}.b%2Ec`,
      [`${root}/100%/x*y`]: `${root}.100%25.x%2Ay`,
      [`${root}/Grüße/`]: `${root}.Grüße.`,
    };
    for (const path of Object.keys(names)) await raw.client.publishAsync(path, '"x"', { qos: 1 });
    const expected = Object.values(names).sort();
    await waitFor(() => dead.length === expected.length, 10_000, 'a dead letter of each');
    expect(dead.map((m) => m.deadLetter?.topic).sort()).toEqual(expected);
    for (const topic of expected) {
      expect(
        seen.filter((s) => s.topic === topic).map((s) => s.attempt),
        topic,
      ).toEqual([1, 2]);
    }
    // Nothing comes again: no loop.
    const count = seen.length;
    await sleep(500);
    expect(seen.length).toBe(count);
  });

  it('joins repeated user properties and ignores garbage in busbar properties', async () => {
    const topic = uniqueName('props');
    const bus = await openBus();
    const raw = await rawClient();
    cleanup.push(
      () => bus.close(),
      () => raw.client.endAsync(),
    );
    const got: Message<unknown>[] = [];
    await bus.subscribe(topic, async (m) => void got.push(m), { group: 'g' });
    const send = (userProperties: Record<string, string | string[]>, body: string) =>
      raw.client.publishAsync(topic, body, { qos: 1, properties: { userProperties } });
    await send({ tenant: ['a', 'b'], busbar: 'not busbar', 'busbar-attempt': 'x' }, '1');
    await send({ busbar: '9000000000000000 far-future' }, '2');
    await send({ 'busbar-ts': 'NaN', 'busbar-id': '' }, '3');
    await send({ busbar: ['1700000000000 a', '1700000000001 b'] }, '4');
    await waitFor(() => got.length === 4, 5_000, 'four messages');
    const byBody = new Map(got.map((m) => [String(m.payload), m]));
    const first = byBody.get('1') as Message<unknown>;
    expect(first.headers).toEqual({ tenant: 'a, b', busbar: 'not busbar' });
    expect(first.attempt).toBe(1);
    // No id on the wire: a fresh UUID (MQTT has no message id).
    expect(first.id).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
    for (const m of got) {
      expect(Number.isNaN(m.timestamp.getTime()), String(m.payload)).toBe(false);
      expect(Math.abs(m.timestamp.getTime() - Date.now()), String(m.payload)).toBeLessThan(60_000);
    }
    expect(byBody.get('2')?.id).toBe('far-future');
    expect(byBody.get('3')?.id).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
    expect(byBody.get('4')?.headers).toEqual({ busbar: '1700000000000 a, 1700000000001 b' });
  });

  it('holds a retry due beyond the longest timer instead of delivering it at once', async () => {
    const topic = uniqueName('due');
    const bus = await openBus({ name: uniqueName('duebus'), sessionExpirySeconds: 60 });
    const raw = await rawClient();
    cleanup.push(
      () => bus.close(),
      () => raw.client.endAsync(),
    );
    const got: string[] = [];
    await bus.subscribe(topic, async (m) => void got.push(String(m.payload)), { group: 'g' });
    const retry = (body: string, due: number) =>
      raw.client.publishAsync(`busbar-retry/g/${topic}`, body, {
        qos: 1,
        properties: { userProperties: { 'busbar-attempt': '2', 'busbar-due': String(due) } },
      });
    await retry('"far"', Date.now() + 2 ** 31 + 60_000);
    await retry('"garbage-due"', Number.NaN);
    await retry('"now"', Date.now() - 1);
    await waitFor(() => got.length >= 2, 5_000, 'the due retries');
    await sleep(1_000);
    expect(got.sort()).toEqual(['garbage-due', 'now']);
  });
});
