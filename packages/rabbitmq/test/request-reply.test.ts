import { getEventListeners } from 'node:events';
import { BusbarError, type RemoteError } from '@busbar/core';
import { brokerAvailable, brokerUrls, collect, createFaultProxy, uniqueName, waitFor } from '@busbar/testing';
import amqplib from 'amqplib';
import { describe, expect, it } from 'vitest';
import { open, raw, testOptions } from './helpers.js';

const ok = await brokerAvailable('rabbitmq');
/** Requests travel on `<exchange>.rpc` (see the README, "Request/reply"). */
const rpcExchange = `${testOptions.exchange}.rpc`;
const target = new URL(brokerUrls.rabbitmq);

/**
 * The RabbitMQ RPC tutorial's server: a queue bound for `topic`, each request answered with
 * `sendToQueue(replyTo, ..., { correlationId })` on the default exchange, then acked.
 */
async function rawServer(
  topic: string,
  answer: (request: amqplib.ConsumeMessage) => amqplib.Options.Publish & {
    body: string;
  },
) {
  const conn = await amqplib.connect(brokerUrls.rabbitmq);
  const channel = await conn.createChannel();
  await channel.assertExchange(rpcExchange, 'topic', { durable: true });
  const { queue } = await channel.assertQueue('', { exclusive: true, autoDelete: true });
  await channel.bindQueue(queue, rpcExchange, topic);
  const seen = collect<amqplib.ConsumeMessage>();
  await channel.consume(queue, (message) => {
    if (!message) return;
    seen.push(message);
    const { body, ...options } = answer(message);
    channel.sendToQueue(message.properties.replyTo, Buffer.from(body), {
      correlationId: message.properties.correlationId,
      ...options,
    });
    channel.ack(message);
  });
  return { seen, close: () => conn.close().catch(() => undefined) };
}

/** The RabbitMQ RPC tutorial's client: an exclusive callback queue, `replyTo` + `correlationId`. */
async function rawCall(topic: string, body: string, extra: amqplib.Options.Publish = {}) {
  const conn = await amqplib.connect(brokerUrls.rabbitmq);
  try {
    const channel = await conn.createChannel();
    const { queue } = await channel.assertQueue('', { exclusive: true });
    const correlationId = `raw-${Math.random()}`;
    const reply = new Promise<amqplib.ConsumeMessage>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error('no reply within 5 s')), 5_000);
      void channel.consume(
        queue,
        (message) => {
          if (message?.properties.correlationId === correlationId) {
            clearTimeout(timer);
            resolve(message);
          }
        },
        { noAck: true },
      );
    });
    channel.publish(rpcExchange, topic, Buffer.from(body), { replyTo: queue, correlationId, ...extra });
    return await reply;
  } finally {
    await conn.close().catch(() => undefined);
  }
}

describe.runIf(ok)('rabbitmq request/reply (direct reply-to)', () => {
  it('a raw amqplib RPC client (tutorial style) is answered by a busbar responder', async () => {
    const bus = await open();
    try {
      const topic = uniqueName('rr-raw-client');
      await bus.respond<{ n: number }, { double: number }>(topic, (m) => ({ double: m.payload.n * 2 }), {
        group: uniqueName('g'),
      });
      const reply = await rawCall(topic, '{"n":21}', { contentType: 'application/json', messageId: 'their-7' });
      expect(JSON.parse(reply.content.toString())).toEqual({ double: 42 });
      expect(reply.properties.contentType).toBe('application/json');
      // A responder failure reaches a foreign client as busbar's error headers and an empty body.
      await bus.respond(`${topic}-fail`, () => {
        throw new RangeError('nope');
      });
      const failed = await rawCall(`${topic}-fail`, '1', { contentType: 'application/json' });
      expect(failed.properties.headers?.['busbar-error']).toBe('RangeError');
      expect(failed.content.length).toBe(0);
    } finally {
      await bus.close();
    }
  });

  it('a busbar request is answered by a raw amqplib RPC server; its error headers become a RemoteError', async () => {
    const bus = await open();
    const topic = uniqueName('rr-raw-server');
    const server = await rawServer(topic, (request) => {
      const n = JSON.parse(request.content.toString()) as number;
      if (n < 0) return { body: '', headers: { 'busbar-error': 'NEGATIVE', 'busbar-error-message': 'n < 0' } };
      return { body: JSON.stringify({ square: n * n }), contentType: 'application/json' };
    });
    try {
      expect(await bus.request(topic, 9, { timeoutMs: 5_000 })).toEqual({ square: 81 });
      const request = server.seen.items[0] as amqplib.ConsumeMessage;
      // The broker rewrites the pseudo-queue name into a per-channel reply address.
      expect(request.properties.replyTo).toMatch(/^amq\.rabbitmq\.reply-to\./);
      expect(typeof request.properties.correlationId).toBe('string');
      expect(request.properties.contentType).toBe('application/json');
      const failed = await bus.request(topic, -1, { timeoutMs: 5_000 }).catch((e: unknown) => e);
      expect(BusbarError.is(failed, 'BUSBAR_REMOTE')).toBe(true);
      expect((failed as RemoteError).remoteCode).toBe('NEGATIVE');
    } finally {
      await server.close();
      await bus.close();
    }
  });

  it('requests and events on one topic stay apart, even in the same group', async () => {
    const bus = await open();
    try {
      const topic = uniqueName('rr-apart');
      const group = uniqueName('g');
      const events = collect<unknown>();
      const requests = collect<unknown>();
      await bus.subscribe(topic, async (m) => void events.push(m.payload), { group });
      await bus.respond(
        topic,
        (m) => {
          requests.push(m.payload);
          return 'ok';
        },
        { group },
      );
      expect(await bus.request(topic, 'req', { timeoutMs: 5_000 })).toBe('ok');
      await bus.publish(topic, 'evt');
      await events.waitForCount(1, 5_000);
      await new Promise((r) => setTimeout(r, 200));
      expect(events.items).toEqual(['evt']);
      expect(requests.items).toEqual(['req']);
    } finally {
      await bus.close();
    }
  });

  it('without a group every responder gets the request (the first reply wins)', async () => {
    const bus = await open();
    try {
      const topic = uniqueName('rr-all');
      const served = collect<string>();
      for (const name of ['a', 'b']) {
        await bus.respond(topic, () => {
          served.push(name);
          return name;
        });
      }
      expect(['a', 'b']).toContain(await bus.request(topic, 1, { timeoutMs: 5_000 }));
      await served.waitForCount(2, 5_000);
      expect([...served.items].sort()).toEqual(['a', 'b']);
    } finally {
      await bus.close();
    }
  });

  it('no responder: NoRespondersError at once (basic.return), also after the last one left; the bus still works', async () => {
    const bus = await open();
    try {
      const topic = uniqueName('rr-none');
      const t0 = Date.now();
      const nobody = await bus.request(topic, 1, { timeoutMs: 10_000 }).catch((e: unknown) => e);
      expect(BusbarError.is(nobody, 'BUSBAR_NO_RESPONDERS')).toBe(true);
      expect(Date.now() - t0).toBeLessThan(2_000);
      const responder = await bus.respond(topic, () => 'here', { group: uniqueName('g') });
      expect(await bus.request(topic, 1, { timeoutMs: 5_000 })).toBe('here');
      await responder.close();
      // The group's request queue is auto-delete: with its last responder gone nothing routes the request.
      await waitFor(
        async () =>
          BusbarError.is(
            await bus.request(topic, 1, { timeoutMs: 2_000 }).catch((e: unknown) => e),
            'BUSBAR_NO_RESPONDERS',
          ),
        5_000,
        'NoRespondersError after the last responder left',
      );
      await bus.respond(topic, () => 'back');
      expect(await bus.request(topic, 1, { timeoutMs: 5_000 })).toBe('back');
    } finally {
      await bus.close();
    }
  });

  it('a raw request without replyTo is dropped (acked, not redelivered) and the responder keeps serving', async () => {
    const bus = await open();
    try {
      const topic = uniqueName('rr-noreply');
      const group = uniqueName('g');
      const served = collect<unknown>();
      await bus.respond(
        topic,
        (m) => {
          served.push(m.payload);
          return m.payload;
        },
        { group },
      );
      await raw(async (ch) => {
        ch.publish(rpcExchange, topic, Buffer.from('"orphan"'), { contentType: 'application/json' });
      });
      // Acked without running the handler: nothing ready or unacked stays in the group's request queue.
      await waitFor(
        async () => (await raw((ch) => ch.checkQueue(`${topic}.${group}:rpc`))).messageCount === 0,
        5_000,
        'the orphan request taken off the queue',
      );
      expect(await bus.request(topic, 'after', { timeoutMs: 5_000 })).toBe('after');
      await new Promise((r) => setTimeout(r, 300));
      expect(served.items).toEqual(['after']);
    } finally {
      await bus.close();
    }
  });

  it('bad input is a typed error, nothing per request stays behind, and the bus still works', async () => {
    const bus = await open();
    try {
      const topic = uniqueName('rr-bad');
      await bus.respond(topic, async (m) => {
        if (m.payload === 'slow') await new Promise((r) => setTimeout(r, 300));
        return m.payload;
      });
      // Headers over the AMQP header table limit: refused before sending, typed and not retryable.
      const huge = await bus
        .request(topic, 1, { timeoutMs: 5_000, headers: { big: 'x'.repeat(200_000) } })
        .catch((e: unknown) => e);
      expect(BusbarError.is(huge)).toBe(true);
      expect((huge as BusbarError).retryable).toBe(false);
      // Answered, timed out and aborted requests sharing one signal: no abort listener is left on it.
      const controller = new AbortController();
      const { signal } = controller;
      const outcomes = await Promise.all([
        ...Array.from({ length: 20 }, (_, n) => bus.request(topic, n, { timeoutMs: 5_000, signal })),
        ...Array.from({ length: 5 }, () => bus.request(topic, 'slow', { timeoutMs: 50, signal }).catch((e) => e)),
      ]);
      expect(outcomes.slice(0, 20)).toEqual(Array.from({ length: 20 }, (_, n) => n));
      for (const e of outcomes.slice(20)) expect(BusbarError.is(e, 'BUSBAR_TIMEOUT')).toBe(true);
      expect(getEventListeners(signal, 'abort')).toHaveLength(0);
      expect(await bus.request(topic, 'still', { timeoutMs: 5_000 })).toBe('still');
    } finally {
      await bus.close();
    }
  });

  it('after connections are cut the reply channel and the responders come back; a request in flight fails typed', {
    timeout: 30_000,
  }, async () => {
    const proxy = await createFaultProxy({ target: { host: target.hostname, port: Number(target.port || 5672) } });
    const url = proxy.url(brokerUrls.rabbitmq);
    const responder = await open({ connectTimeoutMs: 10_000 }, url);
    const requester = await open({ connectTimeoutMs: 10_000 }, url);
    try {
      const topic = uniqueName('rr-cut');
      let slow = true;
      await responder.respond(
        topic,
        async (m) => {
          if (slow && m.payload === 'slow') await new Promise((r) => setTimeout(r, 1_000));
          return m.payload;
        },
        { group: uniqueName('g') },
      );
      expect(await requester.request(topic, 'before', { timeoutMs: 5_000 })).toBe('before');
      const inFlight = requester.request(topic, 'slow', { timeoutMs: 8_000 }).catch((e: unknown) => e);
      await new Promise((r) => setTimeout(r, 200));
      const cutAt = Date.now();
      proxy.cutAll();
      const lost = await inFlight;
      // Its reply channel is gone: a typed error at once, never a hang until the timeout.
      expect(Date.now() - cutAt).toBeLessThan(3_000);
      expect(BusbarError.is(lost, 'BUSBAR_CONNECTION')).toBe(true);
      expect((lost as BusbarError).retryable).toBe(false);
      slow = false;
      await waitFor(
        async () => (await requester.request(topic, 'after', { timeoutMs: 1_000 }).catch(() => undefined)) === 'after',
        15_000,
        'a round trip after the cut',
      );
    } finally {
      await requester.close();
      await responder.close();
      await proxy.close();
    }
  });
});
