import { BusbarError, defineTopic, type Message } from '@busbar/core';
import { uniqueName, waitFor } from '@busbar/testing';
import type { StandardSchemaV1 } from '@standard-schema/spec';
import * as v from 'valibot';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { validate } from '../src/schema.js';
import { memoryBuses } from './helpers.js';

afterEach(() => {
  vi.useRealTimers();
});

const memory = memoryBuses('sch', { closeTimeoutMs: 500 });

function schemaOf(run: (value: unknown) => unknown): StandardSchemaV1<unknown, unknown> {
  return { '~standard': { version: 1, vendor: 'test', validate: run } } as StandardSchemaV1<unknown, unknown>;
}

function failure(run: () => unknown): BusbarError {
  try {
    run();
  } catch (error) {
    expect(BusbarError.is(error), String(error)).toBe(true);
    return error as BusbarError;
  }
  throw new Error('expected a throw');
}

const SECRET = 'sk_live_'.padEnd(20_000, 'S');

describe('a failed validation says what failed, not the whole payload', () => {
  it('a library that quotes the value it got (valibot) gives a bounded message, not retryable', () => {
    const schema = v.object({ token: v.pipe(v.string(), v.regex(/^tok_/)), plan: v.picklist(['a', 'b']) });
    const error = failure(() => validate(schema, { token: SECRET, plan: SECRET }, "Payload for 'a.b'"));
    expect(error.code).toBe('BUSBAR_VALIDATION');
    expect(error.retryable).toBe(false);
    // Before: 40 KB, the whole token twice.
    expect(error.message.length).toBeLessThan(600);
    expect(error.message).toContain('token: Invalid format');
    expect(error.message).not.toContain('S'.repeat(300));
    const issues = (error as BusbarError & { issues: { message: string; path?: unknown[] }[] }).issues;
    expect(issues.map((i) => i.path)).toEqual([['token'], ['plan']]);
    for (const issue of issues) expect(issue.message.length).toBeLessThanOrEqual(200);
  });

  it('a path made of long payload keys is cut in the message', () => {
    const schema = schemaOf(() => ({ issues: [{ message: 'bad', path: ['k'.repeat(5_000), 'x'] }] }));
    const error = failure(() => validate(schema, {}, 'what'));
    expect(error.message.length).toBeLessThan(300);
  });

  it('a schema that throws an error holding the payload gives a bounded message', () => {
    const schema = schemaOf((value) => {
      throw new Error(`cannot handle ${JSON.stringify(value)}`);
    });
    const error = failure(() => validate(schema, { token: SECRET }, 'what'));
    expect(error.code).toBe('BUSBAR_VALIDATION');
    expect(error.message.length).toBeLessThan(400);
    expect((error as BusbarError & { issues: { message: string }[] }).issues[0]?.message.length).toBeLessThan(300);
  });

  it('a publish refused by its schema rejects with that bounded error, and the bus publishes on', async () => {
    const bus = await memory();
    const name = `sch.${uniqueName('pub')}`;
    const topic = defineTopic(name, v.object({ token: v.pipe(v.string(), v.regex(/^tok_/)) }));
    const error = await bus.publish(topic, { token: SECRET }).catch((e: unknown) => e);
    expect(BusbarError.is(error, 'BUSBAR_VALIDATION')).toBe(true);
    expect((error as Error).message.length).toBeLessThan(600);
    await expect(bus.publish(topic, { token: 'tok_1' })).resolves.toBeTypeOf('string');
  });
});

describe('an asynchronous schema that never answers', () => {
  const hangs = schemaOf((value) => (value === 'hang' ? new Promise(() => undefined) : Promise.resolve({ value })));

  it('fails the validation after its timeout with a TimeoutError', async () => {
    const pending = validate(hangs, 'hang', 'what', 50);
    expect(pending).toBeInstanceOf(Promise);
    const error = await (pending as Promise<unknown>).catch((e: unknown) => e);
    expect(BusbarError.is(error, 'BUSBAR_TIMEOUT')).toBe(true);
    expect((error as Error).message).toContain('did not answer within 50 ms');
    await expect(validate(hangs, 'fine', 'what', 50)).resolves.toBe('fine');
  });

  it("a publish stops waiting for it when the publish's signal fires: nothing is sent", async () => {
    const bus = await memory();
    const name = `sch.${uniqueName('abort')}`;
    const seen: unknown[] = [];
    await bus.subscribe(name, (m) => void seen.push(m.payload), { group: 'g' });
    const topic = defineTopic(name, hangs);
    // Before: the signal was not looked at until the broker had the record, so this never settled.
    const error = await bus.publish(topic, 'hang', { signal: AbortSignal.timeout(100) }).catch((e: unknown) => e);
    expect(BusbarError.is(error, 'BUSBAR_ABORTED'), String(error)).toBe(true);
    await bus.publish(topic, 'fine');
    await waitFor(() => seen.length === 1, 2_000, 'the next message');
    expect(seen).toEqual(['fine']);
  });

  it("publishBatch stops waiting for it when the batch's signal fires: nothing of the batch is sent", async () => {
    const bus = await memory();
    const name = `sch.${uniqueName('batch')}`;
    const seen: unknown[] = [];
    await bus.subscribe(name, (m) => void seen.push(m.payload), { group: 'g' });
    const topic = defineTopic(name, hangs);
    const error = await bus
      .publishBatch(topic, [{ payload: 'fine' }, { payload: 'hang' }], { signal: AbortSignal.timeout(100) })
      .catch((e: unknown) => e);
    expect(BusbarError.is(error, 'BUSBAR_ABORTED'), String(error)).toBe(true);
    await bus.publishBatch(topic, [{ payload: 'after' }]);
    await waitFor(() => seen.length === 1, 2_000, 'the next batch');
    expect(seen).toEqual(['after']);
  });

  it("a received message it hangs on times out after the handler's time, is retried like a handler, then dead-lettered; the subscription does not stall", async () => {
    const bus = await memory();
    const name = `sch.${uniqueName('sub')}`;
    const handled: unknown[] = [];
    await bus.subscribe(defineTopic(name, hangs), (m) => void handled.push(m.payload), {
      group: 'g',
      concurrency: 1,
      handlerTimeoutMs: 200,
      retry: { maxAttempts: 2, initialDelayMs: 10, jitter: 0 },
    });
    const dead: Message<unknown>[] = [];
    await bus.subscribeDeadLetters(name, 'g', (m) => void dead.push(m));
    await bus.publish(name, 'hang');
    await bus.publish(name, 'fine');
    // Before: the one slot stayed taken by the validation for good; 'fine' was never handled.
    await waitFor(() => handled.length === 1 && dead.length === 1, 5_000, 'the next message and the dead letter');
    expect(handled).toEqual(['fine']);
    // A timed-out lookup is no verdict on the message: it was tried again before it was given up on.
    expect(dead[0]?.deadLetter?.errorName).toBe('TimeoutError');
    expect(dead[0]?.deadLetter?.attempts).toBe(2);
    expect(dead[0]?.deadLetter?.errorMessage).toContain('within 200 ms');
  });
});

describe('an asynchronous result nobody waits for', () => {
  it('a responder with an asynchronous response schema answers RemoteError and leaves no unhandled rejection', async () => {
    const unhandled: unknown[] = [];
    const onUnhandled = (reason: unknown) => void unhandled.push(reason);
    process.on('unhandledRejection', onUnhandled);
    try {
      const bus = await memory();
      const rejects = schemaOf(async () => ({ issues: [{ message: 'no' }] }));
      const topic = defineTopic<number, number>(`sch.${uniqueName('rr')}`, undefined, { response: rejects } as never);
      await bus.respond(topic, () => 1);
      const error = await bus.request(topic, 1, { timeoutMs: 2_000 }).catch((e: unknown) => e);
      expect(BusbarError.is(error, 'BUSBAR_REMOTE'), String(error)).toBe(true);
      await new Promise((r) => setTimeout(r, 50));
      // Before: the ValidationError of the reply the responder gave up on was unhandled, which ends a Node process.
      expect(unhandled).toEqual([]);
    } finally {
      process.off('unhandledRejection', onUnhandled);
    }
  });
});
