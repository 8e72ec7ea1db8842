import { connect, silentLogger } from '@busbar/core';
import { type Delivery, defineDriver, type Transport } from '@busbar/core/transport';
import { uniqueName, waitFor } from '@busbar/testing';
import { describe, expect, it } from 'vitest';
import { memoryDriver } from '../src/memory/driver.js';

/** The memory transport with each delivery replaced by `wrap(delivery)`: a driver that misbehaves in one way. */
function wrappedMemory(scheme: string, wrap: (d: Delivery) => Delivery) {
  return defineDriver({
    name: scheme,
    schemes: [scheme],
    options: memoryDriver.options,
    create(context) {
      const inner = memoryDriver.create(context);
      const transport: Transport = {
        get capabilities() {
          return inner.capabilities;
        },
        get maxPayloadBytes() {
          return inner.maxPayloadBytes;
        },
        connect: () => inner.connect(),
        publish: (records) => inner.publish(records),
        subscribe: (spec, callbacks) =>
          inner.subscribe(spec, { ...callbacks, onDelivery: (d) => callbacks.onDelivery(wrap(d)) }),
        declareGroup: (topic, group) => inner.declareGroup(topic, group),
        close: () => inner.close(),
      };
      return transport;
    },
  });
}

/** A delivery's settle calls passed through to the memory transport's, with its fields. */
const passThrough = (d: Delivery): Delivery => ({
  id: d.id,
  topic: d.topic,
  key: d.key,
  headers: d.headers,
  body: d.body,
  timestamp: d.timestamp,
  attempt: d.attempt,
  raw: d.raw,
  ack: () => d.ack(),
  retry: (request) => d.retry(request),
  release: () => d.release(),
});

/** The memory transport with broker acks that take `delayMs` to be answered (a slow or distant broker). */
function slowAcks(delayMs: number, answered: { count: number }, throwing = false) {
  return wrappedMemory('slowack', (d) => ({
    ...passThrough(d),
    ack: throwing
      ? () => {
          answered.count++;
          throw new Error('connection closed');
        }
      : async () => {
          await new Promise((resolve) => setTimeout(resolve, delayMs));
          await d.ack();
          answered.count++;
        },
  }));
}

describe('acks', () => {
  it("do not hold the handler's concurrency slot while the broker answers", async () => {
    const answered = { count: 0 };
    const bus = await connect({
      url: `slowack://${uniqueName('ack')}`,
      driver: slowAcks(2_000, answered),
      logger: silentLogger,
    });
    try {
      const handled: string[] = [];
      await bus.subscribe('acks.t', (m) => void handled.push(m.id), { group: 'g', concurrency: 1, prefetch: 10 });
      await bus.publishBatch('acks.t', [
        { payload: 1 },
        { payload: 2 },
        { payload: 3 },
        { payload: 4 },
        { payload: 5 },
      ]);
      // With concurrency 1, each message would otherwise wait 2 s for the previous one's ack.
      await waitFor(() => handled.length === 5, 1_500, 'all five handled');
      expect(answered.count).toBe(0);
    } finally {
      await bus.close();
    }
  });

  it('are all answered before close() resolves', async () => {
    const answered = { count: 0 };
    const bus = await connect({
      url: `slowack://${uniqueName('ack')}`,
      driver: slowAcks(300, answered),
      logger: silentLogger,
    });
    let handled = 0;
    const sub = await bus.subscribe('acks.t', () => void handled++, { group: 'g', concurrency: 2, prefetch: 10 });
    await bus.publishBatch('acks.t', [{ payload: 1 }, { payload: 2 }, { payload: 3 }]);
    await waitFor(() => handled === 3, 1_000, 'all three handled');
    expect(answered.count).toBe(0);
    await sub.close();
    expect(answered.count).toBe(3);
    await bus.close();
  });

  it('that a driver throws (instead of rejecting) do not hold up close()', { timeout: 10_000 }, async () => {
    const answered = { count: 0 };
    const bus = await connect({
      url: `slowack://${uniqueName('ack')}`,
      driver: slowAcks(0, answered, true),
      logger: silentLogger,
      // close() would wait this long for an ack it still counted.
      closeTimeoutMs: 60_000,
    });
    const sub = await bus.subscribe('acks.t', () => undefined, { group: 'g' });
    await bus.publish('acks.t', 1);
    await waitFor(() => answered.count === 1, 1_000, 'the ack attempt');
    await sub.close();
    await bus.close();
  });

  it('a driver bug on the way to settling (deadLetterHeaders throws): released after a pause, not held for good', {
    timeout: 10_000,
  }, async () => {
    const runs: number[] = [];
    let releases = 0;
    const driver = wrappedMemory('buggydl', (d) => ({
      ...passThrough(d),
      deadLetterHeaders: () => {
        throw new Error('driver bug');
      },
      release: () => {
        releases++;
        return d.release();
      },
    }));
    const bus = await connect({ url: `buggydl://${uniqueName('ack')}`, driver, logger: silentLogger });
    await bus.subscribe(
      'acks.bug',
      () => {
        runs.push(Date.now());
        throw new Error('handler fails, so the failure path asks for deadLetterHeaders');
      },
      { group: 'g', retry: false },
    );
    await bus.publish('acks.bug', 1);
    await waitFor(() => runs.length >= 2, 5_000, 'the message delivered again');
    // Given back after the pause, not at once: a bug that repeats is no hot loop.
    expect((runs[1] as number) - (runs[0] as number)).toBeGreaterThanOrEqual(900);
    expect(releases).toBeGreaterThanOrEqual(1);
    // A message parked at close is released then, not left for the pause.
    const parkedReleases = releases;
    const closing = Date.now();
    await bus.close();
    expect(Date.now() - closing).toBeLessThan(500);
    expect(releases).toBe(parkedReleases + 1);
  });
});
