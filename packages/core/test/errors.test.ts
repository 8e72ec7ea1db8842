import { BusbarError, ConnectionError, PermanentError, TimeoutError } from '@busbar/core';
import { describe, expect, it } from 'vitest';
import { isPermanentFailure } from '../src/errors.js';
import { sanitizeError } from '../src/redact.js';

describe('BusbarError', () => {
  it('carries code, retryable and cause', () => {
    const cause = new Error('socket closed');
    const error = new ConnectionError('lost', { cause });
    expect(error.code).toBe('BUSBAR_CONNECTION');
    expect(error.retryable).toBe(true);
    expect(error.cause).toBe(cause);
    expect(error.name).toBe('ConnectionError');
    expect(new TimeoutError('t').retryable).toBe(true);
    expect(new PermanentError('p').retryable).toBe(false);
  });

  it('is recognised across duplicate installs by its Symbol.for brand', () => {
    const foreign = Object.assign(new Error('from another copy'), { code: 'BUSBAR_PUBLISH' });
    Object.defineProperty(foreign, Symbol.for('busbar.error'), { value: true });
    expect(BusbarError.is(foreign)).toBe(true);
    expect(BusbarError.is(foreign, 'BUSBAR_PUBLISH')).toBe(true);
    expect(BusbarError.is(foreign, 'BUSBAR_CONFIG')).toBe(false);
    expect(BusbarError.is(new Error('plain'))).toBe(false);
    expect(BusbarError.is(null)).toBe(false);
  });

  it('serializes without its cause', () => {
    const json = JSON.stringify(new ConnectionError('lost', { cause: new Error('inner') }));
    expect(JSON.parse(json)).toEqual({
      name: 'ConnectionError',
      code: 'BUSBAR_CONNECTION',
      message: 'lost',
      retryable: true,
    });
  });

  it('knows which failures skip retries', () => {
    expect(isPermanentFailure(new PermanentError('x'))).toBe(true);
    expect(isPermanentFailure(new Error('x'))).toBe(false);
  });
});

describe('sanitizeError', () => {
  it('removes secrets from message, stack and the cause chain, and drops other fields', () => {
    const inner = Object.assign(new Error('AUTH s3cret failed'), { command: { args: ['s3cret'] } });
    const outer = new Error('connect redis://:s3cret@h:6379 failed', { cause: inner });
    const clean = sanitizeError(outer, ['s3cret']);
    const text = `${clean.message}${clean.stack}${(clean.cause as Error).message}${(clean.cause as Error).stack}${JSON.stringify(clean)}`;
    expect(text).not.toContain('s3cret');
    expect((clean.cause as { command?: unknown }).command).toBeUndefined();
    expect(clean.message).toContain('***');
  });
});
