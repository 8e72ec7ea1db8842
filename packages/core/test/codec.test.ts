import { BusbarError, bytesCodec, jsonCodec, stringCodec } from '@busbar/core';
import { describe, expect, it } from 'vitest';

describe('codecs', () => {
  it('round-trips JSON', () => {
    const value = { a: 1, b: ['x', null], c: 'ünï' };
    expect(jsonCodec.decode(jsonCodec.encode(value))).toEqual(value);
  });

  it('rejects what JSON cannot carry with BUSBAR_SERIALIZATION', () => {
    const circular: Record<string, unknown> = {};
    circular.me = circular;
    for (const bad of [circular, 1n, undefined, () => 1]) {
      expect(() => jsonCodec.encode(bad)).toThrow(expect.objectContaining({ code: 'BUSBAR_SERIALIZATION' }));
    }
  });

  it('fails undecodable bodies with BUSBAR_DECODE', () => {
    const bad = new TextEncoder().encode('{nope');
    try {
      jsonCodec.decode(bad);
      expect.unreachable();
    } catch (error) {
      expect(BusbarError.is(error, 'BUSBAR_DECODE')).toBe(true);
    }
    expect(() => stringCodec.decode(new Uint8Array([0xff, 0xfe]))).toThrow(
      expect.objectContaining({ code: 'BUSBAR_DECODE' }),
    );
  });

  it('passes bytes through and checks types', () => {
    const bytes = new Uint8Array([1, 2, 3]);
    expect(bytesCodec.decode(bytesCodec.encode(bytes))).toBe(bytes);
    expect(() => bytesCodec.encode('x' as unknown as Uint8Array)).toThrow(
      expect.objectContaining({ code: 'BUSBAR_SERIALIZATION' }),
    );
    expect(() => stringCodec.encode(5 as unknown as string)).toThrow(
      expect.objectContaining({ code: 'BUSBAR_SERIALIZATION' }),
    );
    expect(stringCodec.decode(stringCodec.encode('héllo'))).toBe('héllo');
  });
});
