import { BusbarError, ConnectionError, PublishError } from '@busbar/core';
import { type RetryRequest, type SettleAction, SettleOnce } from '@busbar/core/transport';
import { describe, expect, it } from 'vitest';

const request: RetryRequest = { delayMs: 10, attempt: 2, headers: {} };

/** Records the native calls; each step can be made to throw, reject or stay pending. */
class Probe extends SettleOnce<string> {
  readonly calls: string[] = [];
  readonly hooks: SettleAction[] = [];
  ackWith: () => Promise<void> | undefined = () => undefined;
  retryWith: () => Promise<void> = async () => undefined;
  releaseWith: () => Promise<void> | undefined = () => undefined;

  constructor() {
    super(
      {
        id: 'id-1',
        topic: 't',
        key: undefined,
        headers: { a: 'b' },
        body: new Uint8Array(1),
        timestamp: 5,
        attempt: 1,
      },
      'raw',
    );
  }
  protected ackNative() {
    this.calls.push('ack');
    return this.ackWith();
  }
  protected retryNative() {
    this.calls.push('retry');
    return this.retryWith();
  }
  protected releaseNative() {
    this.calls.push('release');
    return this.releaseWith();
  }
  protected override settled(action: SettleAction) {
    this.hooks.push(action);
  }
}

describe('SettleOnce', () => {
  it('carries the decoded fields; idGenerated defaults to false', () => {
    const d = new Probe();
    expect([d.id, d.topic, d.headers, d.timestamp, d.attempt, d.raw, d.idGenerated]).toEqual([
      'id-1',
      't',
      { a: 'b' },
      5,
      1,
      'raw',
      false,
    ]);
  });

  it('settles once: the first of ack, retry, release wins and later calls do nothing', async () => {
    for (const first of ['ack', 'retry', 'release'] as const) {
      const d = new Probe();
      await (first === 'retry' ? d.retry(request) : d[first]());
      await d.ack();
      await d.retry(request);
      await d.release();
      expect(d.calls).toEqual([first]);
      expect(d.hooks).toEqual([first]);
      expect(d.isSettled).toBe(true);
    }
  });

  it('a synchronous throw from the client becomes a typed rejection, never a throw', async () => {
    const d = new Probe();
    d.ackWith = () => {
      throw new Error('connection closed');
    };
    const settling = d.ack();
    await expect(settling).rejects.toBeInstanceOf(BusbarError);
    await expect(settling).rejects.toThrow(/Acking a message of 't' failed/);
  });

  it('a rejected native release is typed; a BusbarError passes through unchanged', async () => {
    const d = new Probe();
    d.releaseWith = () => Promise.reject(Object.assign(new Error('socket'), { code: 'ECONNRESET' }));
    await expect(d.release()).rejects.toBeInstanceOf(ConnectionError);
    const e = new Probe();
    const typed = new PublishError('refused', { retryable: true });
    e.ackWith = () => Promise.reject(typed);
    await expect(e.ack()).rejects.toBe(typed);
  });

  it('a failed retry leaves the delivery open, so core can still release it', async () => {
    const d = new Probe();
    d.retryWith = () => Promise.reject(new Error('write refused'));
    await expect(d.retry(request)).rejects.toBeInstanceOf(BusbarError);
    expect(d.isSettled).toBe(false);
    expect(d.hooks).toEqual([]);
    await d.release();
    expect(d.calls).toEqual(['retry', 'release']);
    expect(d.hooks).toEqual(['release']);
  });

  it('while a retry is being written, ack and release do nothing', async () => {
    const d = new Probe();
    let finish = () => {};
    d.retryWith = () => new Promise<void>((resolve) => (finish = resolve));
    const retrying = d.retry(request);
    await d.ack();
    await d.release();
    finish();
    await retrying;
    expect(d.calls).toEqual(['retry']);
    expect(d.hooks).toEqual(['retry']);
  });
});
