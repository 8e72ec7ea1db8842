import type { DeadLetterInfo, Message } from '@busbar/core';
import { describe, expect, it } from 'vitest';
import { parse } from '../src/args.js';
import { selection, summarize } from '../src/dead-letters.js';
import { jsonLine, printable, table } from '../src/format.js';

const NOW = Date.parse('2026-01-01T12:00:00Z');

function dead(id: string, ageMs: number, errorName: string, errorMessage: string): Message<unknown> {
  const at = new Date(NOW - ageMs);
  const deadLetter: DeadLetterInfo = {
    errorName,
    errorMessage,
    errorStack: '',
    attempts: 1,
    topic: 't',
    group: 'g',
    firstFailureAt: at,
    lastFailureAt: at,
  };
  return {
    id,
    topic: 't.g.dlq',
    key: undefined,
    payload: {},
    headers: {},
    timestamp: at,
    attempt: 1,
    deadLetter,
    raw: {},
  };
}

const letters = [
  dead('a', 10_000, 'Error', 'boom at step 1'),
  dead('b', 2 * 3_600_000, 'TimeoutError', 'upstream slow'),
  dead('c', 3 * 86_400_000, 'Error', 'boom again'),
];

function pick(argv: string[]): string[] {
  const { filter } = selection(parse(argv).values, NOW);
  return letters.filter((m) => filter === undefined || filter(m)).map((m) => m.id);
}

describe('dead-letter selection', () => {
  it('--error matches the error message or the error name', () => {
    expect(pick(['--error', 'boom'])).toEqual(['a', 'c']);
    expect(pick(['--error', 'Timeout'])).toEqual(['b']);
  });

  it('--older-than and --newer-than compare with the time the message died', () => {
    expect(pick(['--older-than', '1h'])).toEqual(['b', 'c']);
    expect(pick(['--newer-than', '1d'])).toEqual(['a', 'b']);
    expect(pick(['--older-than', '1h', '--newer-than', '1d'])).toEqual(['b']);
    expect(pick(['--older-than', '500ms'])).toEqual(['a', 'b', 'c']);
  });

  it('--id is repeatable, and every filter must hold', () => {
    expect(pick(['--id', 'a', '--id', 'c'])).toEqual(['a', 'c']);
    expect(pick(['--id', 'a', '--id', 'b', '--error', 'boom'])).toEqual(['a']);
    expect(pick([])).toEqual(['a', 'b', 'c']);
  });

  it('summarize counts, finds the oldest and newest, and groups errors by text', () => {
    const summary = summarize(letters);
    expect(summary.count).toBe(3);
    expect(summary.oldest?.getTime()).toBe(NOW - 3 * 86_400_000);
    expect(summary.newest?.getTime()).toBe(NOW - 10_000);
    expect(summary.errors.map((e) => [e.error, e.count])).toEqual([
      ['Error: boom again', 1],
      ['Error: boom at step 1', 1],
      ['TimeoutError: upstream slow', 1],
    ]);
  });
});

describe('output helpers', () => {
  it('tables align columns and leave no trailing blanks', () => {
    expect(
      table(
        ['A', 'LONG'],
        [
          ['xxx', 'y'],
          ['z', ''],
        ],
      ),
    ).toEqual(['A    LONG', 'xxx  y', 'z']);
  });

  it('control characters from a foreign message cannot drive the terminal', () => {
    expect(printable('ok\u001b[2Jgone\r\u0007\u009b')).toBe('ok\\u001b[2Jgone\\u000d\\u0007\\u009b');
    expect(printable('line\nnext\ttab')).toBe('line\nnext\ttab');
  });

  it('--json lines escape what JSON.stringify leaves raw (DEL, C1, line separators) and parse back the same', () => {
    const value = { payload: 'a\u009b2Jb\u007f\u0085\u2028\u2029\u001b[0m', headers: { 'x-\u0090': '\u009d' } };
    const line = jsonLine(value);
    expect(line).toBe(
      '{"payload":"a\\u009b2Jb\\u007f\\u0085\\u2028\\u2029\\u001b[0m","headers":{"x-\\u0090":"\\u009d"}}',
    );
    expect(line).toMatch(/^[\x20-\x7e]*$/);
    expect(JSON.parse(line)).toEqual(value);
  });
});
