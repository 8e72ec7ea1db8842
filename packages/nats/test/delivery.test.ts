import { ConnectionError, TimeoutError } from '@busbar/core';
import type { RetryRequest } from '@busbar/core/transport';
import type { JsMsg } from 'nats';
import { describe, expect, it } from 'vitest';
import { decode } from '../src/codec.js';
import { type Holder, NatsDelivery } from '../src/delivery.js';

/** A fake JetStream message that records the acks and naks sent for it (no server needed). */
function fakeMsg(calls: string[], fail?: Error): JsMsg {
  const send = (what: string) => () => {
    if (fail) throw fail;
    calls.push(what);
  };
  return {
    subject: 'orders.created',
    data: new Uint8Array([1, 2]),
    headers: undefined,
    info: { stream: 'S', deliveryCount: 1, streamSequence: 7, timestampNanos: 1e18 },
    ack: send('ack'),
    nak: send('nak'),
    working: send('working'),
  } as unknown as JsMsg;
}

const request: RetryRequest = { delayMs: 0, attempt: 2, headers: {} };

function holderOf(settled: NatsDelivery[], retry: Holder['retry'] = async () => undefined): Holder {
  return { retry, settled: (d) => settled.push(d) };
}

describe('NatsDelivery (SettleOnce)', () => {
  it('settles once: the first of ack, release, retry reaches the server and the holder, later calls do nothing', async () => {
    for (const first of ['ack', 'release', 'retry'] as const) {
      const calls: string[] = [];
      const settled: NatsDelivery[] = [];
      const m = fakeMsg(calls);
      const d = new NatsDelivery(m, decode(m), holderOf(settled), false);
      expect(d.isSettled).toBe(false);
      if (first === 'ack') await d.ack();
      else if (first === 'release') await d.release();
      else await d.retry(request);
      await d.ack();
      await d.release();
      await d.retry(request);
      expect(calls, first).toEqual([first === 'release' ? 'nak' : 'ack']);
      expect(settled, first).toEqual([d]);
      expect(d.isSettled).toBe(true);
    }
  });

  it('keeps the fields decoded from the message', () => {
    const m = fakeMsg([]);
    const d = new NatsDelivery(m, { ...decode(m), topic: 'orders.x' }, undefined, false);
    expect(d.topic).toBe('orders.x');
    expect(d.id).toBe('S:7');
    expect(d.body).toBe(m.data);
    expect(d.raw).toBe(m);
    expect(d.attempt).toBe(1);
    expect(d.idGenerated).toBe(false);
    expect(d.deadLetterHeaders()).toEqual({ 'busbar-source-offset': 'S:7' });
    expect(new NatsDelivery(m, decode(m), undefined, true).deadLetterHeaders()).toBeUndefined();
  });

  it('a broadcast delivery (no holder) sends nothing on ack, release or retry', async () => {
    // The ordered consumer takes no acks: any ack or nak sent for it would be an error reply from the server.
    const failing = new Error('an ordered consumer message must not be acked');
    for (const action of ['ack', 'release', 'retry'] as const) {
      const m = fakeMsg([], failing);
      const d = new NatsDelivery(m, decode(m), undefined, false);
      const done = action === 'ack' ? d.ack() : action === 'release' ? d.release() : d.retry(request);
      await expect(done, action).resolves.toBeUndefined();
    }
  });

  it('a release while the retry copy is being written does not nak: the message is not delivered twice', async () => {
    // Regression: the earlier delivery settled on release() during a retry, so the message was nak'd (and
    // redelivered) while its retry copy was stored as well.
    const calls: string[] = [];
    const settled: NatsDelivery[] = [];
    let finish: () => void = () => undefined;
    const slow: Holder['retry'] = () =>
      new Promise<void>((resolve) => {
        finish = resolve;
      });
    const m = fakeMsg(calls);
    const d = new NatsDelivery(m, decode(m), holderOf(settled, slow), false);
    const retry = d.retry(request);
    await d.release();
    expect(calls).toEqual([]);
    finish();
    await retry;
    expect(calls).toEqual(['ack']);
    expect(settled).toEqual([d]);
  });

  it('a failed retry copy leaves the delivery open and typed; release then naks', async () => {
    const calls: string[] = [];
    const settled: NatsDelivery[] = [];
    const failing: Holder['retry'] = async () => {
      throw Object.assign(new Error('timeout'), { code: 'TIMEOUT' });
    };
    const m = fakeMsg(calls);
    const d = new NatsDelivery(m, decode(m), holderOf(settled, failing), false);
    const retry = d.retry(request);
    await expect(retry).rejects.toBeInstanceOf(TimeoutError);
    await expect(retry).rejects.toThrow(/Writing the retry copy of a message of 'orders.created' failed/);
    expect(d.isSettled).toBe(false);
    await d.release();
    expect(calls).toEqual(['nak']);
    expect(settled).toEqual([d]);
  });

  it('a client that throws from ack or nak gets a typed rejection naming the action', async () => {
    const closed = Object.assign(new Error('closed'), { code: 'CONNECTION_CLOSED' });
    const m = fakeMsg([], closed);
    const ack = new NatsDelivery(m, decode(m), holderOf([]), false).ack();
    await expect(ack).rejects.toBeInstanceOf(ConnectionError);
    await expect(ack).rejects.toThrow(/^Acking a message of 'orders.created' failed/);
    const release = new NatsDelivery(m, decode(m), holderOf([]), false).release();
    await expect(release).rejects.toThrow(/^Releasing a message of 'orders.created' failed/);
  });
});
