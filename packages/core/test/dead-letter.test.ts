import { deadLetterTopic, PermanentError, parseDeadLetter } from '@busbar/core';
import { describe, expect, it } from 'vitest';
import { deadLetterHeaders, portableHeaders, redriveHeaders } from '../src/dead-letter.js';

describe('dead-letter records', () => {
  it('names the dead-letter topic after topic and group', () => {
    expect(deadLetterTopic('orders.created', 'payments')).toBe('orders.created.payments.dlq');
    expect(deadLetterTopic('orders.created')).toBe('orders.created.dlq');
  });

  it('keeps the original headers and adds the failure metadata, escaped for header-safe transport', () => {
    const error = new PermanentError('line one\nline "two"');
    const headers = deadLetterHeaders(
      { tenant: 'acme', 'busbar-first-failure': '1000', 'busbar-attempt': '3' },
      { error, attempts: 3, topic: 'orders.created', group: 'payments', now: 5_000 },
    );
    expect(headers.tenant).toBe('acme');
    expect(headers['busbar-attempt']).toBeUndefined();
    for (const value of Object.values(headers)) expect(value).not.toMatch(/[\r\n]/);
    const info = parseDeadLetter(headers);
    expect(info).toMatchObject({
      errorName: 'PermanentError',
      errorMessage: 'line one\nline "two"',
      attempts: 3,
      topic: 'orders.created',
      group: 'payments',
    });
    expect(info?.errorStack).toContain('line one');
    expect(info?.firstFailureAt.getTime()).toBe(1_000);
    expect(info?.lastFailureAt.getTime()).toBe(5_000);
  });

  it('truncates huge messages and stacks', () => {
    const error = new Error('x'.repeat(10_000));
    const headers = deadLetterHeaders({}, { error, attempts: 1, topic: 't', group: undefined, now: 1 });
    expect(headers['busbar-dl-message']?.length).toBeLessThan(1_100);
    expect(headers['busbar-dl-stack']?.length).toBeLessThan(2_100);
    expect(parseDeadLetter(headers)?.group).toBe('');
  });

  it('records non-Error throws', () => {
    const headers = deadLetterHeaders({}, { error: 'a string', attempts: 2, topic: 't', group: 'g', now: 1 });
    expect(parseDeadLetter(headers)?.errorMessage).toBe('a string');
  });

  it('strips the failure metadata for a re-drive and counts re-drives', () => {
    const dead = deadLetterHeaders(
      { tenant: 'acme' },
      { error: new Error('e'), attempts: 1, topic: 't', group: 'g', now: 1 },
    );
    const once = redriveHeaders(dead);
    expect(once).toEqual({ tenant: 'acme', 'busbar-redrive': '1' });
    expect(redriveHeaders({ ...dead, 'busbar-redrive': '1' })['busbar-redrive']).toBe('2');
    expect(parseDeadLetter(once)).toBeUndefined();
  });
});

describe('dead letters with headers a broker refuses', () => {
  it('keeps the portable headers and busbar’s own, and names the rest in the metadata', () => {
    const headers = { '': 'a', 'My Header': 'b', Grüße: 'c', ok: 'd', bad: 'x\u0001y', 'busbar-dl-topic': 't' };
    const portable = portableHeaders(headers);
    expect(portable && Object.keys(portable).sort()).toEqual(['busbar-dl-dropped-headers', 'busbar-dl-topic', 'ok']);
    expect(portable?.['busbar-dl-dropped-headers']).toMatch(/^[\x20-\x7e]+$/);
    expect(parseDeadLetter(portable ?? {})?.droppedHeaders).toEqual(['', 'My Header', 'Grüße', 'bad']);
    expect(portableHeaders({ ok: 'd', 'x-trace': '1' })).toBeUndefined();
    expect(parseDeadLetter({ 'busbar-dl-topic': 't' })?.droppedHeaders).toBeUndefined();
  });
});
