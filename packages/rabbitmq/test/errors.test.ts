import { BusbarError } from '@busbar/core';
import { brokerAvailable, brokerUrls, freePort, uniqueName } from '@busbar/testing';
import amqplib from 'amqplib';
import { describe, expect, it } from 'vitest';
import { isVhostRefused, refusedWrite, toBusbarError } from '../src/errors.js';
import { raw } from './helpers.js';

const ok = await brokerAvailable('rabbitmq');

/** What amqplib rejects with, from the real broker (the mapping reads amqplib's own error objects). */
async function nativeFailure(work: () => Promise<unknown>): Promise<unknown> {
  const error = await work().then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(error).toBeInstanceOf(Error);
  return error;
}

describe.runIf(ok)('rabbitmq toBusbarError (errors from a real broker)', () => {
  it('a refused login is a ConnectionError that is not retryable and never shows the password', async () => {
    const url = new URL(brokerUrls.rabbitmq);
    url.password = 'wrong-pw-canary';
    const native = await nativeFailure(() => amqplib.connect(url.toString()));
    const error = toBusbarError(native, { what: 'Connecting failed', op: 'connect', secrets: ['wrong-pw-canary'] });
    expect(BusbarError.is(error, 'BUSBAR_CONNECTION')).toBe(true);
    expect(error.retryable).toBe(false);
    expect(error.message).toMatch(/^Connecting failed: .*ACCESS.REFUSED/);
    expect(JSON.stringify({ m: error.message, s: error.stack })).not.toContain('wrong-pw-canary');
  });

  it('406 inequivalent arg is a ConfigError saying which exchange and argument differ, and what to do', async () => {
    const native = await raw((channel) => nativeFailure(() => channel.assertExchange('amq.topic', 'direct')));
    expect((native as { code?: unknown }).code).toBe(406);
    const error = toBusbarError(native, { what: 'Declaring the exchange failed', op: 'declare', secrets: [] });
    expect(BusbarError.is(error, 'BUSBAR_CONFIG')).toBe(true);
    expect(error.retryable).toBe(false);
    expect(error.message).toBe(
      "Declaring the exchange failed: exchange 'amq.topic' exists with other settings (PRECONDITION_FAILED): its argument 'type' differs (received 'direct' but current is 'topic'); use another 'exchange' name, or topology: 'existing' to use it as it is",
    );
  });

  it('404 on a missing queue is a ConfigError naming it', async () => {
    const queue = uniqueName('missing');
    const native = await raw((channel) => nativeFailure(() => channel.checkQueue(queue)));
    const error = toBusbarError(native, { what: 'Subscribing failed', op: 'consume', secrets: [] });
    expect(BusbarError.is(error, 'BUSBAR_CONFIG')).toBe(true);
    expect(error.message).toBe(`Subscribing failed: queue '${queue}' does not exist (NOT_FOUND)`);
  });

  it("a publish nacked by the broker is a retryable PublishError, whatever the operation's wording", async () => {
    const queue = uniqueName('full');
    const conn = await amqplib.connect(brokerUrls.rabbitmq);
    try {
      const channel = await conn.createConfirmChannel();
      await channel.assertQueue(queue, {
        exclusive: true,
        arguments: { 'x-max-length': 0, 'x-overflow': 'reject-publish' },
      });
      const native = await nativeFailure(
        () =>
          new Promise<void>((resolve, reject) => {
            channel.sendToQueue(queue, Buffer.from('x'), {}, (error: unknown) => (error ? reject(error) : resolve()));
          }),
      );
      const error = toBusbarError(native, { what: `Send to '${queue}' failed`, op: 'publish', secrets: [] });
      expect(BusbarError.is(error, 'BUSBAR_PUBLISH')).toBe(true);
      expect(error.retryable).toBe(true);
      expect(error.message).toBe(`Send to '${queue}' failed: the broker nacked it`);
    } finally {
      await conn.close().catch(() => undefined);
    }
  });

  it('the operation decides what is left: a closed channel fails a publish as a PublishError, else a ConnectionError', async () => {
    const native = await raw(async (channel) => {
      await channel.close();
      return nativeFailure(() => channel.checkQueue('amq.rabbitmq.reply-to'));
    });
    const publish = toBusbarError(native, { what: 'Publish', op: 'publish', secrets: [] });
    const consume = toBusbarError(native, { what: 'Subscribe', op: 'consume', secrets: [] });
    expect(BusbarError.is(publish, 'BUSBAR_PUBLISH')).toBe(true);
    expect(BusbarError.is(consume, 'BUSBAR_CONNECTION')).toBe(true);
    expect(consume.retryable).toBe(true);
  });

  it('a refused socket is a retryable ConnectionError (core common rule)', async () => {
    const port = await freePort();
    const native = await nativeFailure(() => amqplib.connect(`amqp://guest:guest@127.0.0.1:${port}`));
    const error = toBusbarError(native, { what: 'Connecting failed', op: 'connect', secrets: [] });
    expect(BusbarError.is(error, 'BUSBAR_CONNECTION')).toBe(true);
    expect(error.retryable).toBe(true);
  });

  it("amqplib's own refusal to encode a header table is an InvalidHeaderError", async () => {
    const conn = await amqplib.connect(brokerUrls.rabbitmq);
    try {
      const channel = await conn.createConfirmChannel();
      let native: unknown;
      try {
        channel.publish('', 'nowhere', Buffer.from('x'), { headers: { big: 'x'.repeat(70_000) } });
      } catch (error) {
        native = error;
      }
      expect(native).toBeInstanceOf(RangeError);
      const error = toBusbarError(native, { what: "Publish to 'nowhere' failed", op: 'publish', secrets: [] });
      expect(BusbarError.is(error, 'BUSBAR_INVALID_HEADER')).toBe(true);
      expect(error.retryable).toBe(false);
    } finally {
      await conn.close().catch(() => undefined);
    }
  });

  it('a BusbarError stays as it is', () => {
    const typed = toBusbarError(new Error('x'), { what: 'a', op: 'connect', secrets: [] });
    expect(toBusbarError(typed, { what: 'b', op: 'publish', secrets: [] })).toBe(typed);
  });
});

describe('rabbitmq refusals without a broker: refused writes and vhosts', () => {
  const closed = (text: string, code: number) =>
    Object.assign(new Error(`Channel closed by server: ${text}`), { code });

  it('a topic permission refusal fails the message it names for good, not the others in flight', () => {
    const reason = closed(
      "403 (ACCESS-REFUSED) with message \"ACCESS_REFUSED - write access to topic 'forbidden.x' in exchange 'busbar' in vhost 'v' refused for user 'app'\"",
      403,
    );
    expect(refusedWrite(reason, 'busbar', 'forbidden.x')).toMatch(/^403 \(ACCESS-REFUSED\).*forbidden\.x/);
    expect(refusedWrite(reason, 'busbar', 'orders')).toBeUndefined();
  });

  it('no write permission on the exchange fails every message to it; other reply codes are no refusal', () => {
    const reason = closed("ACCESS_REFUSED - access to exchange 'busbar' in vhost 'v' refused for user 'app'", 403);
    expect(refusedWrite(reason, 'busbar', 'any.topic')).toContain("exchange 'busbar'");
    expect(refusedWrite(reason, 'other', 'any.topic')).toBeUndefined();
    expect(refusedWrite(closed("NOT_FOUND - no exchange 'busbar' in vhost 'v'", 404), 'busbar', 'x')).toBeUndefined();
  });

  it('a refused vhost (amqplib 2.x loses the reason, others keep it) is a ConnectionError that is not retryable', () => {
    for (const text of [
      'Expected ConnectionOpenOk; got <ConnectionClose channel:0>',
      'Handshake terminated by server: 530 (NOT-ALLOWED) with message "NOT_ALLOWED - vhost v not found"',
    ]) {
      expect(isVhostRefused(new Error(text))).toBe(true);
      const error = toBusbarError(new Error(text), { what: 'Connecting failed', op: 'connect', secrets: [] });
      expect(BusbarError.is(error, 'BUSBAR_CONNECTION')).toBe(true);
      expect(error.retryable).toBe(false);
    }
  });
});
