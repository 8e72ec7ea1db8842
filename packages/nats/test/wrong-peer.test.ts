import { createWrongPeer, failedConnect } from '@busbar/testing';
import { describe, expect, it } from 'vitest';
import { toBusbarError } from '../src/errors.js';
import { driver } from '../src/index.js';

// The portable cases (an HTTP server, random bytes) are the conformance suite's 'wrong peer'; these are NATS' own.
const connecting = { what: 'Could not connect', op: 'connect', secrets: [] } as const;

describe('nats: connect to a port that is not NATS', () => {
  it("nats.js' 'unexpected response from server' (a first line that is no INFO) fails a connect for good", () => {
    const error = toBusbarError(new Error('unexpected response from server'), connecting);
    expect(error.code).toBe('BUSBAR_CONNECTION');
    expect(error.retryable).toBe(false);
    expect(error.message).toMatch(/does not speak NATS/);
  });

  it('a port that takes the connection and says nothing fails at the connect timeout, retryable, saying what silence can mean', async () => {
    const peer = await createWrongPeer(undefined, false);
    try {
      const failure = await failedConnect({ url: `nats://127.0.0.1:${peer.port}`, driver, connectTimeoutMs: 500 });
      expect(failure.error.code).toBe('BUSBAR_CONNECTION');
      expect(failure.error.retryable).toBe(true);
      expect(failure.error.message).toMatch(/no NATS INFO within 500 ms .*a port of another protocol or a TLS port/);
    } finally {
      await peer.close();
    }
  });

  it('a port that hangs up without a word is retryable and not reported as a refused connection', async () => {
    const peer = await createWrongPeer(Buffer.from([0x01, 0x02, 0x03]), true);
    try {
      const failure = await failedConnect({ url: `nats://127.0.0.1:${peer.port}`, driver, connectTimeoutMs: 5_000 });
      expect(failure.error.retryable).toBe(true);
      expect(failure.error.message).toMatch(/hung up without a NATS INFO/);
      expect(failure.error.message).not.toMatch(/CONNECTION_REFUSED/);
    } finally {
      await peer.close();
    }
  });
});
