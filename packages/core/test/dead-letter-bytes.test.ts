import { describe, expect, it } from 'vitest';
import { connect, defineTopic, PermanentError, silentLogger } from '../src/index.js';

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

describe('dead letters labelled with a content type their body is not', () => {
  it('are read back as bytes by peek and by a reader, never dropped', async () => {
    const bus = await connect({ url: 'memory://dl-bytes', logger: silentLogger });
    // What a foreign producer (or a dead letter written before its label was fixed) leaves in the queue.
    const mislabelled = defineTopic<string>('orders.g.dlq', undefined, {
      codec: { contentType: 'application/json', encode: (v) => new TextEncoder().encode(v), decode: () => '' },
    });
    // The dead-letter queue exists (its reader group declared) before the letter arrives.
    expect(await bus.peekDeadLetters('orders', 'g', { idleMs: 50 })).toHaveLength(0);
    await bus.publish(mislabelled, '{not json');
    const first = await bus.peekDeadLetters('orders', 'g', { idleMs: 100 });
    const second = await bus.peekDeadLetters('orders', 'g', { idleMs: 100 });
    expect(first).toHaveLength(1);
    expect(second).toHaveLength(1);
    expect(new TextDecoder().decode(first[0]?.payload as Uint8Array)).toBe('{not json');
    const read: unknown[] = [];
    await bus.subscribeDeadLetters('orders', 'g', (m) => void read.push(m.payload));
    for (let i = 0; i < 100 && read.length === 0; i++) await sleep(10);
    expect(read).toHaveLength(1);
    expect(read[0]).toBeInstanceOf(Uint8Array);
    await bus.close();
  });
});

describe('a dead-letter queue longer than a hundred', () => {
  it('is seen whole by peek (a walk held at most 100 before)', async () => {
    const bus = await connect({ url: 'memory://dl-many', logger: silentLogger });
    await bus.subscribe(
      'many',
      () => {
        throw new PermanentError('no');
      },
      { group: 'g' },
    );
    await bus.publishBatch(
      'many',
      Array.from({ length: 350 }, (_, n) => ({ payload: n })),
    );
    let letters = await bus.peekDeadLetters('many', 'g', { idleMs: 200 });
    for (let i = 0; i < 20 && letters.length < 350; i++)
      letters = await bus.peekDeadLetters('many', 'g', { idleMs: 200 });
    expect(letters).toHaveLength(350);
    await bus.close();
  });
});
