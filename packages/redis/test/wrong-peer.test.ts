import { BusbarError, connect, silentLogger } from '@busbar/core';
import { createWrongPeer, expectFatal, failedConnect, freePort, waitFor } from '@busbar/testing';
import { describe, expect, it } from 'vitest';
import { toBusbarError } from '../src/errors.js';
import { driver } from '../src/index.js';

// The portable cases (an HTTP server, random bytes) are the conformance suite's 'wrong peer'; these are Redis' own.
describe('redis: connect to a port that is not Redis', () => {
  it("ioredis' parser error on bytes that are no RESP reply fails a connect for good, and names the first byte", () => {
    const parser = new Error('Protocol error, got "H" as reply type byte. Please report this.');
    const error = toBusbarError(parser, { what: 'Could not connect', op: 'connect', secrets: [] });
    expect(error.code).toBe('BUSBAR_CONNECTION');
    expect(error.retryable).toBe(false);
    expect(error.message).toBe(
      'Could not connect: the server does not speak Redis: its answer is no RESP reply (it began with "H"); is this Redis\' port (6379)?',
    );
  });

  it('a refused port leaves no timer behind: the process can exit at once (ioredis held it 2 s)', async () => {
    const timers = () => process.getActiveResourcesInfo().filter((r) => r === 'Timeout').length;
    const before = timers();
    const port = await freePort();
    const error = await connect({ url: `redis://127.0.0.1:${port}`, driver, logger: silentLogger }).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(BusbarError.is(error) && error.retryable).toBe(true);
    await waitFor(() => timers() <= before, 500, 'the timers of the failed connect to go').catch(() => undefined);
    expect(timers()).toBeLessThanOrEqual(before);
  });

  it('rediss:// at a plaintext port fails at once, not retryable: the server is not speaking TLS', async () => {
    const peer = await createWrongPeer('HTTP/1.1 400 Bad Request\r\n\r\n', false);
    try {
      const failure = await failedConnect({ url: `rediss://app:s3cret@127.0.0.1:${peer.port}`, driver });
      expectFatal(failure, /TLS handshake failed: the server is not speaking TLS/, ['s3cret'], 2_500);
      expect(failure.error.message).not.toMatch(/SSL routines/);
    } finally {
      await peer.close();
    }
  });

  it('rediss:// at a plaintext port that waits for a command says the TLS hello went unanswered (it said "connect timed out")', async () => {
    const peer = await createWrongPeer(undefined, false);
    try {
      const failure = await failedConnect({ url: `rediss://127.0.0.1:${peer.port}`, driver, connectTimeoutMs: 500 });
      expect(failure.error.retryable).toBe(true);
      expect(failure.error.message).toMatch(/no answer to the TLS handshake within 500 ms \(a plaintext port/);
    } finally {
      await peer.close();
    }
  });

  it('rediss:// at a port that hangs up on the TLS hello says what that means, and is retried (a full server does it too)', async () => {
    const peer = await createWrongPeer(undefined, true);
    try {
      const failure = await failedConnect({ url: `rediss://127.0.0.1:${peer.port}`, driver });
      expect(failure.error.retryable).toBe(true);
      expect(failure.error.message).toMatch(/a plaintext port hangs up on a TLS hello/);
      expect(failure.error.message).not.toMatch(/client certificate/);
    } finally {
      await peer.close();
    }
  });
});
