import { BusbarError, type Message } from '@busbar/core';
import { uniqueName, waitFor } from '@busbar/testing';
import { describe, expect, it } from 'vitest';
import { checkHeaders } from '../src/names.js';
import { memoryBuses, thrownBy } from './helpers.js';

/** Publish headers that are not a plain record of strings, from JavaScript callers: typed, never dropped. */

const memory = memoryBuses('nh');

const invalidHeader = (run: () => unknown): BusbarError => thrownBy(run, 'BUSBAR_INVALID_HEADER');

const throwingGetter = Object.defineProperty({}, 'tenant', {
  enumerable: true,
  get() {
    throw new TypeError('getter exploded');
  },
});
const throwingProxy = new Proxy(
  {},
  {
    ownKeys() {
      throw new TypeError('ownKeys trap exploded');
    },
  },
);
const revoked = Proxy.revocable({}, {});
revoked.revoke();

describe('headers that cannot be read as a record of strings', () => {
  it.each<[string, unknown]>([
    // Before: a raw TypeError out of publish, no code.
    ['a getter that throws', throwingGetter],
    ['a Proxy whose ownKeys trap throws', throwingProxy],
    ['a revoked Proxy', revoked.proxy],
    // Before: accepted with no headers at all (no own keys), the caller's headers dropped without a word.
    ['a Map', new Map([['tenant', 'acme']])],
    ['a fetch Headers', new Headers({ tenant: 'acme' })],
  ])('%s is an InvalidHeaderError', (_label, headers) => {
    invalidHeader(() => checkHeaders(headers));
  });

  it('a plain or null-prototype record (node:http headers) is still read', () => {
    const nullProto = Object.assign(Object.create(null) as Record<string, string>, { tenant: 'acme' });
    expect(checkHeaders(nullProto)).toEqual({ tenant: 'acme' });
    expect(checkHeaders({ tenant: 'acme' })).toEqual({ tenant: 'acme' });
  });

  it('on the bus: publish rejects typed, sends nothing, and the next publish goes through', async () => {
    const bus = await memory();
    const topic = `hdr.${uniqueName('t')}`;
    const seen: Message<unknown>[] = [];
    await bus.subscribe(topic, (m) => void seen.push(m), { group: 'g' });
    for (const headers of [throwingGetter, new Map([['tenant', 'acme']])]) {
      const error = await bus.publish(topic, 1, { headers: headers as never }).catch((e: unknown) => e);
      expect(BusbarError.is(error, 'BUSBAR_INVALID_HEADER'), String(error)).toBe(true);
    }
    await bus.publish(topic, 2, { headers: { tenant: 'acme' } });
    await waitFor(() => seen.length === 1, 2_000, 'the good message');
    expect(seen[0]?.payload).toBe(2);
    expect(seen[0]?.headers).toEqual({ tenant: 'acme' });
  });
});
