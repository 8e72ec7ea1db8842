import {
  connect,
  type DeadLetterInfo,
  deadLetterTopic,
  type Message,
  parseDeadLetter,
  silentLogger,
} from '@busbar/core';
import { uniqueName, waitFor } from '@busbar/testing';
import { describe, expect, it } from 'vitest';
import { deadLetterHeaders } from '../src/dead-letter.js';
import { memoryBroker } from '../src/memory/broker.js';
import { DEAD_LETTER_READER_GROUP } from '../src/transport/headers.js';

/**
 * Dead letters a foreign service, an old busbar or a hostile producer wrote: `busbar-dl-*` headers busbar
 * itself never writes. Each case is the header values that replace a well-formed letter's.
 */
const long = 'x'.repeat(10_000);
const hostile: readonly (readonly [string, Readonly<Record<string, string>>])[] = [
  ['times past the Date range', { 'busbar-dl-first-failure': '1e20', 'busbar-dl-last-failure': '8640000000000001' }],
  ['negative values', { 'busbar-dl-first-failure': '-1', 'busbar-dl-attempts': '-1' }],
  ['NaN', { 'busbar-dl-first-failure': 'NaN', 'busbar-dl-last-failure': 'NaN', 'busbar-dl-attempts': 'NaN' }],
  [
    'infinities',
    { 'busbar-dl-first-failure': '1e309', 'busbar-dl-last-failure': '-1e309', 'busbar-dl-attempts': '1e309' },
  ],
  ['counts past the safe integers', { 'busbar-dl-attempts': '1e20' }],
  ['a fractional count', { 'busbar-dl-attempts': '2.5', 'busbar-dl-last-failure': '1.5' }],
  ['empty values', { 'busbar-dl-first-failure': '', 'busbar-dl-attempts': '', 'busbar-dl-error': '' }],
  [
    '10 KB strings',
    {
      'busbar-dl-error': long,
      'busbar-dl-message': long,
      'busbar-dl-stack': long,
      'busbar-dl-topic': long,
      'busbar-dl-group': long,
      'busbar-dl-attempts': long,
      'busbar-dl-first-failure': long,
      'busbar-dl-dropped-headers': JSON.stringify([long, long]),
    },
  ],
  [
    'control characters',
    {
      'busbar-dl-attempts': '3\u0000',
      'busbar-dl-first-failure': '1000\u0007',
      'busbar-dl-error': 'Err\u0000or\n',
      'busbar-dl-message': '\\u0000\\u001b[31m',
    },
  ],
  [
    'broken escapes and lone surrogates',
    {
      'busbar-dl-message': '\\u12',
      'busbar-dl-error': '\\ud800',
      'busbar-dl-stack': '"\\',
      'busbar-dl-group': '\ud800',
    },
  ],
  ['dropped headers that are not a list of names', { 'busbar-dl-dropped-headers': '{"a":1}' }],
];

const wellFormed: Readonly<Record<string, string>> = {
  'busbar-dl-error': 'Error',
  'busbar-dl-message': 'boom',
  'busbar-dl-stack': '',
  'busbar-dl-attempts': '3',
  'busbar-dl-topic': 'orders',
  'busbar-dl-group': 'g',
  'busbar-dl-first-failure': '1000',
  'busbar-dl-last-failure': '2000',
};

function expectValid(info: DeadLetterInfo | undefined, label: string): void {
  expect(info, label).toBeDefined();
  if (info === undefined) return;
  for (const at of [info.firstFailureAt, info.lastFailureAt]) {
    expect(at, label).toBeInstanceOf(Date);
    expect(Number.isNaN(at.getTime()), label).toBe(false);
    expect(at.getTime(), label).toBeGreaterThanOrEqual(0);
    expect(() => at.toISOString(), label).not.toThrow();
  }
  expect(Number.isSafeInteger(info.attempts) && info.attempts >= 0, `${label}: attempts ${info.attempts}`).toBe(true);
  const texts: [string, number][] = [
    [info.errorName, 203],
    [info.errorMessage, 1_003],
    [info.errorStack, 2_003],
    [info.topic, 1_027],
    [info.group, 203],
    ...(info.droppedHeaders ?? []).map((name): [string, number] => [name, 203]),
  ];
  for (const [text, max] of texts) {
    expect(typeof text, label).toBe('string');
    expect(text.length, label).toBeLessThanOrEqual(max);
    expect(text.isWellFormed(), label).toBe(true);
  }
}

describe('dead-letter metadata a foreign or hostile producer wrote', () => {
  it.each(hostile)('%s: every field is valid or defaulted', (label, headers) => {
    expectValid(parseDeadLetter({ ...wellFormed, ...headers }), label);
  });

  it('reads the values busbar writes unchanged, and defaults what is out of range', () => {
    expect(parseDeadLetter(wellFormed)).toMatchObject({ attempts: 3, errorName: 'Error', topic: 'orders', group: 'g' });
    expect(parseDeadLetter(wellFormed)?.firstFailureAt.getTime()).toBe(1_000);
    const odd = parseDeadLetter({ ...wellFormed, 'busbar-dl-attempts': '-1', 'busbar-dl-first-failure': '1e20' });
    expect(odd?.attempts).toBe(0);
    expect(odd?.firstFailureAt.getTime()).toBe(0);
    expect(odd?.lastFailureAt.getTime()).toBe(2_000);
    expect(
      parseDeadLetter({ ...wellFormed, 'busbar-dl-last-failure': '8640000000000000' })?.lastFailureAt.getTime(),
    ).toBe(8.64e15);
  });

  it('is not carried into a dead letter busbar writes', () => {
    const facts = { error: new Error('e'), attempts: 1, topic: 't', group: 'g', now: 5_000 };
    for (const carried of ['1e20', '-1', 'soon', '']) {
      expect(deadLetterHeaders({ 'busbar-first-failure': carried }, facts)['busbar-dl-first-failure']).toBe('5000');
    }
    expect(deadLetterHeaders({ 'busbar-first-failure': '1000' }, facts)['busbar-dl-first-failure']).toBe('1000');
  });

  it('are peeked, re-driven and handed to a reader once each on memory://', async () => {
    const name = uniqueName('dlh');
    const bus = await connect({ url: `memory://${name}`, logger: silentLogger });
    const topic = 'orders.hostile';
    const dlq = deadLetterTopic(topic, 'g');
    const broker = memoryBroker(name);
    // The dead-letter queue exists before the foreign letters arrive, as it would after busbar's first one.
    broker.queue(dlq, DEAD_LETTER_READER_GROUP);
    const write = () =>
      hostile.forEach(([label, headers], n) => {
        broker.publish({
          topic: dlq,
          id: `hostile-${n}`,
          key: undefined,
          // A re-drive sends each letter to its recorded topic: that one stays this test's.
          headers: { ...wellFormed, ...headers, 'busbar-dl-topic': topic, label },
          body: new TextEncoder().encode(JSON.stringify({ n })),
          contentType: 'application/json',
          timestamp: Date.now(),
        });
      });
    const ids = hostile.map((_, n) => `hostile-${n}`).sort();
    try {
      write();
      const peeked = await bus.peekDeadLetters(topic, 'g', { idleMs: 100 });
      expect(peeked).toHaveLength(hostile.length);
      for (const m of peeked) expectValid(m.deadLetter, String(m.headers.label));

      // A re-drive whose filter reads the metadata (as `--older-than` does) walks and moves every letter.
      const handled: Message<unknown>[] = [];
      await bus.subscribe(topic, (m) => void handled.push(m), { group: 'g' });
      const moved = await bus.redrive(topic, 'g', {
        idleMs: 100,
        filter: (m) => m.deadLetter?.lastFailureAt.toISOString() !== '' && (m.deadLetter?.attempts ?? -1) >= 0,
      });
      expect(moved).toBe(hostile.length);
      await waitFor(() => handled.length === hostile.length, 3_000, 'every re-driven message handled');
      expect(handled.map((m) => m.id).sort()).toEqual(ids);

      // A reader that formats the failure times (as any log line or UI does) gets each letter once.
      write();
      const read: Message<unknown>[] = [];
      await bus.subscribeDeadLetters(topic, 'g', (m) => {
        m.deadLetter?.firstFailureAt.toISOString();
        m.deadLetter?.lastFailureAt.toISOString();
        read.push(m);
      });
      await waitFor(() => read.length >= hostile.length, 3_000, 'every hostile dead letter read');
      // None came back: a handler that threw on one would see it again after the reader's backoff.
      await new Promise((resolve) => setTimeout(resolve, 100));
      expect(read.map((m) => m.id).sort()).toEqual(ids);
    } finally {
      await bus.close();
    }
  });
});
