import type { IdempotencyStore } from '@busbar/core';
import { describe, expect, it } from 'vitest';
import { uniqueName } from './brokers.js';
import { sleep } from './wait.js';

/**
 * The contract every IdempotencyStore must meet (memory, Redis, PostgreSQL).
 * `makeStore` is called more than once: two instances stand for two consumer
 * processes sharing one backend.
 */
export function describeIdempotencyStore(
  name: string,
  makeStore: () => IdempotencyStore | Promise<IdempotencyStore>,
): void {
  describe(`idempotency store: ${name}`, () => {
    const key = () => `group-a:${uniqueName('msg')}`;

    it('claims a new key, then reports it busy while claimed', async () => {
      const store = await makeStore();
      const k = key();
      expect(await store.claim(k, 5_000)).toBe('claimed');
      expect(await store.claim(k, 5_000)).toBe('busy');
    });

    it('reports done after complete, for as long as the ttl', async () => {
      const store = await makeStore();
      const k = key();
      expect(await store.claim(k, 5_000)).toBe('claimed');
      await store.complete(k, 60_000);
      expect(await store.claim(k, 5_000)).toBe('done');
      expect(await (await makeStore()).claim(k, 5_000)).toBe('done');
    });

    it('makes a key claimable again after release (a failed attempt)', async () => {
      const store = await makeStore();
      const k = key();
      await store.claim(k, 5_000);
      await store.release(k);
      expect(await store.claim(k, 5_000)).toBe('claimed');
    });

    it('release does not undo a completed key', async () => {
      const store = await makeStore();
      const k = key();
      await store.claim(k, 5_000);
      await store.complete(k, 60_000);
      await store.release(k);
      expect(await store.claim(k, 5_000)).toBe('done');
    });

    it('lets a claim lapse after its lease (a crashed consumer)', async () => {
      const store = await makeStore();
      const k = key();
      // Leases long enough that 'busy' holds on a loaded machine, short enough to keep the suite quick.
      expect(await store.claim(k, 1_000)).toBe('claimed');
      expect(await store.claim(k, 1_000)).toBe('busy');
      await sleep(1_500);
      expect(await store.claim(k, 1_000)).toBe('claimed');
    });

    it('forgets a done key after its ttl', async () => {
      const store = await makeStore();
      const k = key();
      await store.claim(k, 5_000);
      await store.complete(k, 300);
      await sleep(1_200);
      expect(await store.claim(k, 5_000)).toBe('claimed');
    });

    it('keys are independent', async () => {
      const store = await makeStore();
      const a = key();
      const b = key();
      await store.claim(a, 5_000);
      await store.complete(a, 60_000);
      expect(await store.claim(b, 5_000)).toBe('claimed');
      expect(await store.claim(`group-b:${a.slice(8)}`, 5_000)).toBe('claimed');
    });

    it('two consumers racing on one key: exactly one claims it', async () => {
      const [one, two] = await Promise.all([makeStore(), makeStore()]);
      for (let round = 0; round < 20; round++) {
        const k = key();
        const results = await Promise.all(
          Array.from({ length: 10 }, (_, i) => ((i % 2 === 0 ? one : two) as IdempotencyStore).claim(k, 5_000)),
        );
        expect(results.filter((r) => r === 'claimed')).toHaveLength(1);
        expect(results.filter((r) => r === 'busy')).toHaveLength(9);
      }
    });
  });
}
