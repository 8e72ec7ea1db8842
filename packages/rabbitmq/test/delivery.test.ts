import { BusbarError, ConnectionError } from '@busbar/core';
import type { RetryRequest } from '@busbar/core/transport';
import type { Channel, ConsumeMessage } from 'amqplib';
import { describe, expect, it } from 'vitest';
import { ChannelAcks } from '../src/acks.js';
import type { Incoming } from '../src/codec.js';
import { RabbitDelivery, type RetrySink } from '../src/delivery.js';

/** A channel that records acks and nacks (by delivery tag) and can be made to throw. */
function fakeChannel() {
  const calls: string[] = [];
  let failing = false;
  const channel = {
    ack: (m: ConsumeMessage, multiple: boolean) => {
      if (failing) throw new Error('Channel closed');
      calls.push(`ack ${m.fields.deliveryTag}${multiple ? ' multiple' : ''}`);
    },
    nack: (m: ConsumeMessage, _multiple: boolean, requeue: boolean) => {
      if (failing) throw new Error('Channel closed');
      calls.push(`nack ${m.fields.deliveryTag} ${requeue}`);
    },
  } as unknown as Channel;
  return { channel, calls, fail: () => (failing = true) };
}

const incoming: Incoming = {
  id: 'id-1',
  topic: 'orders',
  key: undefined,
  headers: {},
  timestamp: 0,
  attempt: 1,
  contentType: undefined,
  idGenerated: false,
  body: new Uint8Array(),
};
const request: RetryRequest = { delayMs: 10, attempt: 2, headers: {} };

function delivery(acks: ChannelAcks, tag: number, sink: RetrySink): RabbitDelivery {
  acks.delivered(tag);
  const message = { fields: { deliveryTag: tag }, properties: {}, content: Buffer.alloc(0) } as ConsumeMessage;
  return new RabbitDelivery(message, incoming, acks, sink, 'orders.g');
}

const okSink: RetrySink = { retryTo: async () => undefined };

describe('RabbitDelivery (SettleOnce)', () => {
  it('settles once: a second ack, a release after an ack and a retry after a release do nothing', async () => {
    const { channel, calls } = fakeChannel();
    const acks = new ChannelAcks(channel);
    const one = delivery(acks, 1, okSink);
    await Promise.all([one.ack(), one.ack()]);
    // The ack goes out with this turn's flush (nothing waits for it).
    await new Promise((resolve) => setImmediate(resolve));
    await one.release();
    await one.retry(request);
    const two = delivery(acks, 2, okSink);
    await two.release();
    await two.ack();
    await two.retry(request);
    expect(calls).toEqual(['ack 1 multiple', 'nack 2 true']);
    expect(one.isSettled && two.isSettled).toBe(true);
  });

  it('retry writes the copy, then acks the original', async () => {
    const { channel, calls } = fakeChannel();
    const acks = new ChannelAcks(channel);
    const seen: string[] = [];
    const d = delivery(acks, 7, {
      retryTo: async (queue, got, req) => {
        seen.push(`${queue} ${got.id} ${req.attempt}`);
        expect(calls).toEqual([]);
      },
    });
    await d.retry(request);
    await d.retry(request);
    expect(seen).toEqual(['orders.g id-1 2']);
    expect(calls).toEqual(['ack 7 multiple']);
  });

  it('a failed retry copy leaves it open (typed error), so core can still release it', async () => {
    const { channel, calls } = fakeChannel();
    const acks = new ChannelAcks(channel);
    const d = delivery(acks, 3, {
      retryTo: async () => {
        throw new Error('message nacked');
      },
    });
    const error = await d.retry(request).catch((e: unknown) => e);
    expect(BusbarError.is(error)).toBe(true);
    expect(d.isSettled).toBe(false);
    await d.release();
    expect(calls).toEqual(['nack 3 true']);
  });

  it('on a dead channel: retry writes no copy and fails with a ConnectionError; the delivery stays open', async () => {
    const { channel, calls } = fakeChannel();
    const acks = new ChannelAcks(channel);
    let copies = 0;
    const d = delivery(acks, 4, {
      retryTo: async () => {
        copies++;
      },
    });
    acks.dead();
    const error = await d.retry(request).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(ConnectionError);
    expect(copies).toBe(0);
    expect(d.isSettled).toBe(false);
    // release on the dead channel fails typed too (the broker requeued it already), and settles it.
    await expect(d.release()).rejects.toBeInstanceOf(ConnectionError);
    expect(d.isSettled).toBe(true);
    expect(calls).toEqual([]);
  });

  it('a reply on a dead consumer channel is a ConnectionError, not a plain Error, and nothing is published', async () => {
    const { channel } = fakeChannel();
    let published = 0;
    (channel as unknown as { publish: () => boolean }).publish = () => {
      published++;
      return true;
    };
    const acks = new ChannelAcks(channel);
    const d = delivery(acks, 6, okSink);
    acks.dead();
    let error: unknown;
    try {
      d.publishOnChannel('amq.rabbitmq.reply-to.x', Buffer.from('r'), {});
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(ConnectionError);
    expect((error as ConnectionError).retryable).toBe(true);
    expect(published).toBe(0);
  });

  it('acks the channel throws on are reported once for their batch, typed; the acks themselves wait for nothing', async () => {
    const { channel, fail } = fakeChannel();
    const lost: [number, unknown][] = [];
    const acks = new ChannelAcks(channel, (count, error) => lost.push([count, error]));
    const a = delivery(acks, 5, okSink);
    const b = delivery(acks, 6, okSink);
    fail();
    await Promise.all([a.ack(), b.ack()]);
    await new Promise((resolve) => setImmediate(resolve));
    expect(lost.length).toBe(1);
    expect(lost[0]?.[0]).toBe(2);
    expect(lost[0]?.[1]).toBeInstanceOf(ConnectionError);
    expect(acks.alive).toBe(false);
  });

  it('an ack on a channel already closed rejects with a typed error, never a raw one', async () => {
    const { channel } = fakeChannel();
    const acks = new ChannelAcks(channel);
    const d = delivery(acks, 8, okSink);
    acks.dead();
    const error = await d.ack().catch((e: unknown) => e);
    expect(BusbarError.is(error)).toBe(true);
    expect(error).toBeInstanceOf(ConnectionError);
  });
});

describe('ChannelAcks', () => {
  it('behind a delivery held unsettled, forgets the tags acked one by one and acks as before', async () => {
    const { channel, calls } = fakeChannel();
    const acks = new ChannelAcks(channel);
    const turn = () => new Promise((resolve) => setImmediate(resolve));
    acks.delivered(1);
    for (let tag = 2; tag <= 20_001; tag++) {
      acks.delivered(tag);
      acks.queue(tag);
      if (tag % 100 === 0) await turn();
    }
    await turn();
    expect(acks.tracked).toBeLessThan(5_000);
    acks.delivered(20_002);
    acks.delivered(20_003);
    acks.queue(20_003);
    await turn();
    calls.length = 0;
    // The held one and a later one settle together: one `multiple` ack covers both (the rest are acked already).
    acks.queue(1);
    acks.queue(20_002);
    await turn();
    expect(calls).toEqual(['ack 20002 multiple']);
    expect(acks.tracked).toBe(0);
  });
});
