import { BusbarError } from '@busbar/core';
import fc from 'fast-check';
import { expect, it } from 'vitest';
import { recorder, type Suite } from './context.js';

/** Codes a publish may fail with on bad input; anything else (or a raw error) fails the property. */
const INPUT_CODES = new Set([
  'BUSBAR_INVALID_TOPIC',
  'BUSBAR_INVALID_HEADER',
  'BUSBAR_PAYLOAD_TOO_LARGE',
  'BUSBAR_SERIALIZATION',
  'BUSBAR_CONFIG',
  'BUSBAR_VALIDATION',
]);

const text = fc.oneof(
  fc.string({ maxLength: 40 }),
  fc.string({ unit: 'binary', maxLength: 40 }),
  fc.string({
    unit: fc.constantFrom('.', '*', '#', '>', '+', '/', '$', ' ', '\u0000', '\n', 'a', 'é', '😀'),
    maxLength: 30,
  }),
);

const headerValue = fc.oneof(
  text,
  fc.constantFrom(null, undefined, 1, true, '', 'v'.repeat(70_000)),
  fc.object({ maxDepth: 1 }),
);

const headers = fc.oneof(
  fc.constant(undefined),
  fc.dictionary(text, headerValue, { maxKeys: 6 }),
  fc.constantFrom(null, 'x', 1, ['a']),
);

const payload = fc.oneof(
  fc.jsonValue({ maxDepth: 3 }),
  fc.anything({
    maxDepth: 2,
    withBigInt: true,
    withMap: true,
    withSet: true,
    withTypedArray: true,
    withSparseArray: true,
  }),
  fc.string({ unit: 'binary', maxLength: 200 }),
);

const topic = fc.oneof(
  text,
  fc.constantFrom('a.b', 'a.*', 'a.#', 'amq.x', '$SYS.x', 'a'.repeat(300), 42, null),
  fc.array(fc.stringMatching(/^[A-Za-z0-9_-]{1,8}$/), { minLength: 1, maxLength: 4 }).map((s) => s.join('.')),
);

/**
 * Random topics, header maps and payloads thrown at `publish`: each call resolves with an id or rejects with a
 * typed, non-retryable input error, nothing is thrown synchronously, and the bus still delivers afterwards.
 * Valid random topics are real topics on the broker: runs are few enough to keep that cheap.
 */
export function fuzzTests(s: Suite, runs: number): void {
  it(`fuzz: ${runs} random topic/header/payload combinations at publish`, async () => {
    const bus = await s.bus();
    const prefix = s.topic('fuzz');
    let accepted = 0;
    await fc.assert(
      fc.asyncProperty(topic, headers, payload, async (name, hdrs, value) => {
        // Valid names land under this test's own prefix, so random topics do not collide with other runs.
        const target = typeof name === 'string' && /^[A-Za-z0-9_.-]+$/.test(name) ? `${prefix}.${name}` : name;
        let outcome: unknown;
        try {
          outcome = await bus.publish(target as string, value, { headers: hdrs as Record<string, string> });
        } catch (error) {
          outcome = error;
        }
        if (typeof outcome === 'string') {
          accepted++;
          return;
        }
        expect(BusbarError.is(outcome), `raw error: ${String(outcome)}`).toBe(true);
        const e = outcome as BusbarError;
        expect(INPUT_CODES.has(e.code), `${e.code}: ${e.message}`).toBe(true);
        expect(e.retryable).toBe(false);
      }),
      { numRuns: runs, seed: Number(process.env.BUSBAR_FUZZ_SEED ?? Date.now() % 2 ** 31) },
    );
    expect(accepted).toBeGreaterThan(0);
    const after = s.topic('fuzz-after');
    const got = recorder<string>();
    await bus.subscribe<string>(after, got.handler, { group: s.group() });
    await s.settle();
    await bus.publish(after, 'ok');
    await s.waitFor(() => got.messages.length >= 1, 20_000, 'a round trip after the fuzz run');
  }, 120_000);
}
