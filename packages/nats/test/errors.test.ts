import {
  ConfigError,
  ConnectionError,
  InvalidHeaderError,
  PayloadTooLargeError,
  PublishError,
  TimeoutError,
} from '@busbar/core';
import { ErrorCode, NatsError } from 'nats';
import { describe, expect, it } from 'vitest';
import { isNotFound, publishRefusal, toBusbarError } from '../src/errors.js';

const context = { what: 'Doing it', op: 'consume', secrets: ['s3cret'] } as const;

describe('nats errors as busbar errors', () => {
  it("maps nats.js' codes to busbar's classes, credentials not retryable", () => {
    const cases: [string, new (...args: never[]) => Error, boolean][] = [
      [ErrorCode.Timeout, TimeoutError, true],
      [ErrorCode.ConnectionRefused, ConnectionError, true],
      [ErrorCode.ConnectionClosed, ConnectionError, true],
      [ErrorCode.Disconnect, ConnectionError, true],
      [ErrorCode.AuthorizationViolation, ConnectionError, false],
      [ErrorCode.BadAuthentication, ConnectionError, false],
      [ErrorCode.PermissionsViolation, ConnectionError, false],
      [ErrorCode.InvalidOption, ConfigError, false],
      [ErrorCode.BadSubject, ConfigError, false],
    ];
    for (const [code, type, retryable] of cases) {
      const mapped = toBusbarError(NatsError.errorForCode(code as ErrorCode), context);
      expect(mapped, code).toBeInstanceOf(type);
      expect(mapped.retryable, code).toBe(retryable);
      expect(mapped.message.startsWith('Doing it: '), code).toBe(true);
    }
    expect(toBusbarError(NatsError.errorForCode(ErrorCode.BadHeader), context)).toBeInstanceOf(InvalidHeaderError);
  });

  it('a JetStream API refusal is a PublishError not worth retrying; anything unknown follows the operation', () => {
    const api = Object.assign(new Error('stream name already in use'), { api_error: { err_code: 10058, code: 400 } });
    const refused = toBusbarError(api, context);
    expect(refused).toBeInstanceOf(PublishError);
    expect(refused.retryable).toBe(false);
    const odd = new Error('something odd s3cret');
    const onPublish = toBusbarError(odd, { ...context, op: 'publish' });
    expect(onPublish).toBeInstanceOf(PublishError);
    expect(onPublish.retryable).toBe(true);
    expect(toBusbarError(odd, context)).toBeInstanceOf(ConnectionError);
    expect(onPublish.message).not.toContain('s3cret');
  });

  it('keeps the predicates: not found, and the synchronous publish refusals', () => {
    expect(isNotFound(Object.assign(new Error('x'), { api_error: { err_code: 10059 } }))).toBe(true);
    expect(isNotFound(new Error('consumer not found'))).toBe(true);
    expect(isNotFound(new Error('other'))).toBe(false);
    const big = publishRefusal(NatsError.errorForCode(ErrorCode.MaxPayloadExceeded), 't', 10, 5);
    expect(big).toBeInstanceOf(PayloadTooLargeError);
    expect(publishRefusal(NatsError.errorForCode(ErrorCode.BadHeader), 't', 1, 5)).toBeInstanceOf(InvalidHeaderError);
    expect(publishRefusal(new Error('x'), 't', 1, 5)).toBeUndefined();
  });
});
