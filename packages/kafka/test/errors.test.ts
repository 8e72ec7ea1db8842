import { BusbarError } from '@busbar/core';
import kafkajs from 'kafkajs';
import { describe, expect, it } from 'vitest';
import { toBusbarError } from '../src/errors.js';

const { KafkaJSConnectionError, KafkaJSNonRetriableError, KafkaJSProtocolError, KafkaJSSASLAuthenticationError } =
  kafkajs;

const map = (error: unknown, op: 'connect' | 'publish' | 'consume' | 'declare' = 'connect') =>
  toBusbarError(error, { what: 'Doing it', op, secrets: ['hunter2'] });

const denied = () =>
  new KafkaJSProtocolError({
    type: 'TOPIC_AUTHORIZATION_FAILED',
    code: 29,
    retriable: false,
    message: 'Not authorized to access topics: [Topic authorization failed]',
  } as unknown as Error);

describe('kafka error mapping: security failures', () => {
  it('a refused SASL login is a ConnectionError that is not retryable (the same password fails again)', () => {
    const refused = new (KafkaJSSASLAuthenticationError as unknown as new (message: string) => Error)(
      'SASL SCRAM SHA512 authentication failed: invalid credentials',
    );
    const error = map(refused);
    expect(error.code).toBe('BUSBAR_CONNECTION');
    expect(error.retryable).toBe(false);
    expect(error.message).toMatch(/SASL/);
  });

  it('a TLS verification failure, also wrapped by kafkajs, is a ConnectionError that is not retryable', () => {
    const socket = Object.assign(new KafkaJSConnectionError('Connection error: certificate has expired'), {
      code: 'CERT_HAS_EXPIRED',
    });
    const Wrapper = KafkaJSNonRetriableError as unknown as new (e: Error, o: { cause: Error }) => Error;
    for (const error of [socket, new Wrapper(socket, { cause: socket })]) {
      const mapped = map(error);
      expect(mapped.code).toBe('BUSBAR_CONNECTION');
      expect(mapped.retryable).toBe(false);
      expect(mapped.message).toMatch(/expired/);
    }
  });

  it('a plain connection failure stays retryable', () => {
    const error = map(Object.assign(new KafkaJSConnectionError('Connection error: refused'), { code: 'ECONNREFUSED' }));
    expect(error.code).toBe('BUSBAR_CONNECTION');
    expect(error.retryable).toBe(true);
  });

  it('an ACL refusal is a PublishError on publish and a ConnectionError elsewhere, never retryable', () => {
    const published = map(denied(), 'publish');
    expect(BusbarError.is(published, 'BUSBAR_PUBLISH')).toBe(true);
    expect(published.retryable).toBe(false);
    expect(published.message).toMatch(/Not authorized/);
    for (const op of ['consume', 'declare'] as const) {
      const other = map(denied(), op);
      expect(other.code).toBe('BUSBAR_CONNECTION');
      expect(other.retryable).toBe(false);
    }
  });
});
