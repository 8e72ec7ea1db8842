import { BusbarError, jsonCodec } from '@busbar/core';
import { describe, expect, it } from 'vitest';

/**
 * The JSON codec called directly (responders encode replies with it, users wrap it): whatever a payload's
 * toJSON() throws, the codec throws a bounded SerializationError.
 */
describe('jsonCodec.encode with a toJSON() that throws', () => {
  it.each<[string, () => unknown]>([
    // Before: reading `.message` of null threw "Cannot read properties of null" out of the codec.
    ['null', () => null],
    ['undefined', () => undefined],
    ['a null-prototype object', () => Object.create(null)],
    ['an Error with a 50 KB message', () => new Error('s'.repeat(50_000))],
  ])('%s: a bounded SerializationError', (_label, make) => {
    let error: unknown;
    try {
      jsonCodec.encode({
        toJSON() {
          throw make();
        },
      });
    } catch (e) {
      error = e;
    }
    expect(BusbarError.is(error, 'BUSBAR_SERIALIZATION'), String(error)).toBe(true);
    expect((error as BusbarError).retryable).toBe(false);
    expect((error as Error).message.length).toBeLessThan(400);
  });
});
