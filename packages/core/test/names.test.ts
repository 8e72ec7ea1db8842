import { describe, expect, it } from 'vitest';
import { assertGroupName, assertTopicName, checkHeaders, topicMatches } from '../src/names.js';

describe('topic names', () => {
  it('accepts portable names', () => {
    for (const name of ['orders', 'orders.created', 'a-b_c.D9', 'x'.repeat(249)])
      expect(() => assertTopicName(name, 'publish')).not.toThrow();
  });

  it.each([
    ['', 'non-empty'],
    ['a..b', 'empty segment'],
    ['.a', 'empty segment'],
    ['a b', 'segments may only hold'],
    ['a/b', 'segments may only hold'],
    ['a.*', 'wildcard'],
    ['a.#', 'wildcard'],
    ['x'.repeat(250), 'over the limit'],
    ['nul\u0000', 'segments may only hold'],
  ])('rejects %j on publish', (name, why) => {
    expect(() => assertTopicName(name, 'publish')).toThrow(why);
  });

  it('allows * and a trailing # in subscriptions only', () => {
    expect(() => assertTopicName('a.*.c', 'subscribe')).not.toThrow();
    expect(() => assertTopicName('a.#', 'subscribe')).not.toThrow();
    expect(() => assertTopicName('a.#.c', 'subscribe')).toThrow("'#' before the last segment");
  });

  it('shows control characters escaped in messages', () => {
    expect(() => assertTopicName('bad\u0001name', 'publish')).toThrow('\\u0001');
  });

  it('matches wildcards like AMQP topic bindings', () => {
    expect(topicMatches('a.*.c', 'a.b.c')).toBe(true);
    expect(topicMatches('a.*.c', 'a.b.b.c')).toBe(false);
    expect(topicMatches('a.#', 'a')).toBe(true);
    expect(topicMatches('a.#', 'a.b.c')).toBe(true);
    expect(topicMatches('a.#', 'b.a')).toBe(false);
    expect(topicMatches('a.b', 'a.b')).toBe(true);
    expect(topicMatches('a.b', 'a.bc')).toBe(false);
  });

  it('validates group names', () => {
    expect(() => assertGroupName('payments-v2_eu')).not.toThrow();
    for (const bad of ['', 'a.b', 'a b', 'x'.repeat(101), 42]) expect(() => assertGroupName(bad)).toThrow('is invalid');
  });
});

describe('headers', () => {
  it('copies valid headers', () => {
    const input = { tenant: 'acme', 'x-trace.id': 'abc' };
    const out = checkHeaders(input);
    expect(out).toEqual(input);
    expect(out).not.toBe(input);
  });

  it.each([
    [JSON.parse('{"__proto__":"x"}'), 'not allowed'],
    [{ constructor: 'x' }, 'not allowed'],
    [{ 'busbar-id': 'x' }, 'reserved'],
    [{ 'BUSBAR-ID': 'x' }, 'reserved'],
    [{ 'bad name': 'x' }, 'invalid'],
    [{ n: 1 }, 'must be a string'],
    [{ n: null }, 'must be a string'],
    [{ n: 'a\u0000b' }, 'U+0000'],
    [[], 'must be an object'],
  ])('rejects %j', (headers, why) => {
    expect(() => checkHeaders(headers)).toThrow(why);
  });

  it('rejects symbol keys', () => {
    expect(() => checkHeaders({ [Symbol('s')]: 'x' })).toThrow('symbols');
  });
});
