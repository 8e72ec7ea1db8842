import { BusbarError, UnsupportedError } from '@busbar/core';
import type { RetryRequest } from '@busbar/core/transport';
import type { IPublishPacket } from 'mqtt';
import { ErrorWithReasonCode } from 'mqtt';
import { describe, expect, it } from 'vitest';
import type { Inbound, ManualAcks } from '../src/acks.js';
import type { DecodedFields } from '../src/codec.js';
import { MqttDelivery, type RetrySink } from '../src/delivery.js';

/** Records what reached the session: PUBACKs and releases (a real ManualAcks needs a live connection). */
function fakes(retry: RetrySink['retry']) {
  const calls: string[] = [];
  const acks = {
    ack: () => {
      calls.push('puback');
      return undefined;
    },
    release: () => void calls.push('release'),
  } as unknown as ManualAcks;
  const sink: RetrySink = { redeliverOnRelease: true, retry };
  const packet = {
    cmd: 'publish',
    topic: 'a/b',
    qos: 1,
    messageId: 7,
    payload: Buffer.from('{}'),
    properties: { contentType: 'application/json' },
  } as unknown as IPublishPacket;
  const fields: DecodedFields = {
    id: 'm-1',
    idGenerated: false,
    key: 'k',
    timestamp: 5,
    attempt: 1,
    body: new Uint8Array(),
  };
  const inbound = { packet, generation: 0, ackedOffline: false, settled: false } as Inbound;
  const delivery = new MqttDelivery('a.b', { h: 'v' }, fields, packet, acks, inbound, sink);
  return { delivery, calls };
}

const request: RetryRequest = { delayMs: 10, attempt: 2, headers: {} };

describe('MqttDelivery (SettleOnce)', () => {
  it('carries the decoded fields and the packet', () => {
    const { delivery } = fakes(async () => undefined);
    expect(delivery).toMatchObject({ id: 'm-1', topic: 'a.b', key: 'k', attempt: 1, timestamp: 5, idGenerated: false });
    expect(delivery.contentType).toBe('application/json');
    expect(delivery.headers).toEqual({ h: 'v' });
    expect(delivery.raw.messageId).toBe(7);
  });

  it('acks once: a second ack, a release or a retry afterwards reach nothing', async () => {
    let retried = 0;
    const { delivery, calls } = fakes(async () => void retried++);
    await delivery.ack();
    await delivery.ack();
    await delivery.release();
    await delivery.retry(request);
    expect(calls).toEqual(['puback']);
    expect(retried).toBe(0);
  });

  it('a release while a retry republishes does not release: the retry PUBACKs once it is confirmed', async () => {
    let confirm: () => void = () => undefined;
    const { delivery, calls } = fakes(() => new Promise<void>((resolve) => (confirm = resolve)));
    const retrying = delivery.retry(request);
    await delivery.release();
    expect(calls).toEqual([]);
    confirm();
    await retrying;
    expect(calls).toEqual(['puback']);
    expect(delivery.isSettled).toBe(true);
  });

  it('a refused retry republish rejects typed and leaves the delivery open, so core can still release it', async () => {
    const { delivery, calls } = fakes(() => Promise.reject(new ErrorWithReasonCode('denied', 0x87)));
    const error = await delivery.retry(request).catch((e: unknown) => e);
    expect(BusbarError.is(error, 'BUSBAR_PUBLISH'), String(error)).toBe(true);
    expect((error as Error).message).toContain('not authorized (0x87)');
    expect(delivery.isSettled).toBe(false);
    await delivery.release();
    expect(calls).toEqual(['release']);
  });

  it("a broadcast subscription's UnsupportedError reaches core as it is", async () => {
    const unsupported = new UnsupportedError('Broadcast subscriptions retry in process');
    const { delivery } = fakes(() => Promise.reject(unsupported));
    await expect(delivery.retry(request)).rejects.toBe(unsupported);
  });
});
