import { BusbarError, PayloadTooLargeError } from '@busbar/core';
import { nativeError } from '@busbar/core/transport';
import { describe, expect, it } from 'vitest';

const SECRET = 's3cr/et@pw';
const ctx = (op: 'connect' | 'publish' | 'consume') => ({ what: 'Doing it', op, secrets: [SECRET] });

function socketError(code: string): Error {
  return Object.assign(new Error(`connect ${code} 127.0.0.1:1 (password ${SECRET})`), { code });
}

describe('nativeError', () => {
  it('keeps a BusbarError as it is', () => {
    const original = new PayloadTooLargeError(10, 5, 't');
    expect(nativeError(original, ctx('publish'))).toBe(original);
  });

  it('maps socket codes to a retryable ConnectionError whatever the operation, and redacts', () => {
    for (const op of ['connect', 'publish', 'consume'] as const) {
      const error = nativeError(socketError('ECONNREFUSED'), ctx(op));
      expect(error.code).toBe('BUSBAR_CONNECTION');
      expect(error.retryable).toBe(true);
      expect(error.message).toMatch(/^Doing it: connect ECONNREFUSED/);
      expect(JSON.stringify(error) + String(error.stack) + String((error.cause as Error).stack)).not.toContain(SECRET);
    }
  });

  it('finds a socket code on a wrapped cause', () => {
    const wrapped = new Error('outer', { cause: socketError('ECONNRESET') });
    expect(nativeError(wrapped, ctx('consume')).code).toBe('BUSBAR_CONNECTION');
  });

  it('maps TLS verification failures to a ConnectionError that is not retryable', () => {
    for (const code of [
      'CERT_HAS_EXPIRED',
      'DEPTH_ZERO_SELF_SIGNED_CERT',
      'ERR_TLS_CERT_ALTNAME_INVALID',
      'ERR_OSSL_BAD_DECRYPT',
    ]) {
      const error = nativeError(socketError(code), ctx('connect'));
      expect(error.code).toBe('BUSBAR_CONNECTION');
      expect(error.retryable).toBe(false);
    }
  });

  it("names the client's key when OpenSSL refuses it in its own words (a wrong passphrase can read 'unsupported')", () => {
    const openssl = Object.assign(new Error('error:1E08010C:DECODER routines::unsupported'), {
      code: 'ERR_OSSL_UNSUPPORTED',
    });
    const error = nativeError(openssl, ctx('connect'));
    expect(error.retryable).toBe(false);
    expect(error.message).toMatch(/passphrase|key/);
  });

  it('a TLS hello answered by a plaintext port is a TLS error that is not retryable and says so, not in OpenSSL words', () => {
    const line =
      '40CD4814357F0000:error:0A00010B:SSL routines:tls_validate_record_header:wrong version number:../deps/openssl/openssl/ssl/record/methods/tlsany_meth.c:77:\n';
    // As a TLS socket reports it, and as mqtt.js passes on the failed write of its CONNECT (code EPROTO).
    const errors = [
      Object.assign(new Error(line), { code: 'ERR_SSL_WRONG_VERSION_NUMBER' }),
      Object.assign(new Error(`write EPROTO ${line}`), { code: 'EPROTO' }),
      new Error(`Could not connect to amqps://h:5672: ${line}`, {
        cause: Object.assign(new Error(line), { code: 'ERR_SSL_WRONG_VERSION_NUMBER' }),
      }),
    ];
    for (const native of errors) {
      const error = nativeError(native, ctx('connect'));
      expect(error.code).toBe('BUSBAR_CONNECTION');
      expect(error.retryable).toBe(false);
      expect(error.message).toMatch(/TLS handshake failed: the server is not speaking TLS/);
      expect(error.message).not.toMatch(/SSL routines|openssl/);
    }
    expect(nativeError(errors[2], ctx('connect')).message).toMatch(
      /^Doing it: Could not connect to amqps:\/\/h:5672: TLS/,
    );
  });

  it('a server that hangs up during the TLS handshake is retryable (a full server does it too) and named as a likely plaintext port', () => {
    const closed = Object.assign(
      new Error('Client network socket disconnected before secure TLS connection was established'),
      { code: 'ECONNRESET' },
    );
    const error = nativeError(closed, ctx('connect'));
    expect(error.code).toBe('BUSBAR_CONNECTION');
    expect(error.retryable).toBe(true);
    expect(error.message).toMatch(/plaintext port/);
  });

  it('falls back by operation: a publish is a PublishError, a read a ConnectionError', () => {
    expect(nativeError(new Error('odd'), ctx('publish')).code).toBe('BUSBAR_PUBLISH');
    expect(nativeError(new Error('odd'), ctx('consume')).code).toBe('BUSBAR_CONNECTION');
    expect(nativeError('a string', ctx('connect')).message).toBe('Doing it: a string');
  });

  it("uses the driver's classifier first, with its retryable flag and message", () => {
    const refused = nativeError(socketError('ECONNREFUSED'), ctx('publish'), () => ({ kind: 'refused' }));
    expect(refused.code).toBe('BUSBAR_PUBLISH');
    expect(refused.retryable).toBe(false);
    const auth = nativeError(new Error('bad'), ctx('connect'), () => ({ kind: 'auth', message: 'wrong password' }));
    expect(auth.message).toBe('Doing it: wrong password');
    expect(auth.retryable).toBe(false);
    const kinds = {
      timeout: 'BUSBAR_TIMEOUT',
      closed: 'BUSBAR_CLOSED',
      config: 'BUSBAR_CONFIG',
      topic: 'BUSBAR_INVALID_TOPIC',
      header: 'BUSBAR_INVALID_HEADER',
    } as const;
    for (const [kind, code] of Object.entries(kinds)) {
      const error = nativeError(new Error('x'), ctx('publish'), () => ({ kind: kind as keyof typeof kinds }));
      expect(error.code).toBe(code);
      expect(BusbarError.is(error)).toBe(true);
      expect(error.cause).toBeInstanceOf(Error);
    }
    const built = new PayloadTooLargeError(1, 0, 't');
    expect(nativeError(new Error('x'), ctx('publish'), () => built)).toBe(built);
  });
});
