import { inspect } from 'node:util';
import { createWrongPeer, expectFatal, failedConnect, freePort, waitFor, watchUncaught } from '@busbar/testing';
import { describe, expect, it } from 'vitest';
import { driver } from '../src/index.js';
import { connectionClass, installKafkajsPatch } from '../src/internals.js';
import { SocketRegistry } from '../src/sockets.js';

// The portable cases (an HTTP server, random bytes) are the conformance suite's 'wrong peer'; these are Kafka's own.
describe('kafka: connect to a port that is not Kafka', () => {
  it('an answer whose frame size kafkajs cannot decode (0, 2, negative) fails the connect, not the process', async () => {
    const uncaught = watchUncaught();
    try {
      for (const hex of ['00000000000000000000', '0000000200000000', 'ffffffff00000000']) {
        const peer = await createWrongPeer(Buffer.from(hex, 'hex'), false);
        try {
          const failure = await failedConnect({ url: `kafka://127.0.0.1:${peer.port}`, driver });
          expectFatal(failure, /does not speak Kafka/, [], 2_500);
        } finally {
          await peer.close();
        }
      }
    } finally {
      uncaught.stop();
    }
    expect(uncaught.errors.map((e) => inspect(e))).toEqual([]);
  });

  it('after the connect, bytes kafkajs cannot frame fail that connection, not the process', async () => {
    installKafkajsPatch();
    const sockets = new SocketRegistry();
    // Past the connect, a first answer is not checked: kafkajs' own decoding meets the bytes.
    sockets.connected();
    const peer = await createWrongPeer(Buffer.from('0000000000000000', 'hex'), false);
    const uncaught = watchUncaught();
    try {
      const quiet = { debug() {}, info() {}, warn() {}, error() {} };
      const Connection = connectionClass();
      const link = new Connection({
        host: '127.0.0.1',
        port: peer.port,
        logger: { ...quiet, namespace: () => quiet },
        socketFactory: sockets.factory,
        requestTimeout: 1_000,
        connectionTimeout: 500,
      });
      await link.connect();
      await waitFor(() => !link.isConnected(), 2_000, 'the connection to fail');
    } finally {
      uncaught.stop();
      sockets.shutdown();
      await peer.close();
    }
    expect(uncaught.errors.map((e) => inspect(e))).toEqual([]);
  });

  it('a plaintext client at a port that answers with a TLS alert is told to set the tls option', async () => {
    const peer = await createWrongPeer(Buffer.from('15030300020246', 'hex'), true);
    try {
      expectFatal(await failedConnect({ url: `kafka://127.0.0.1:${peer.port}`, driver }), /it speaks TLS/, [], 2_500);
    } finally {
      await peer.close();
    }
  });

  it('the tls option at a plaintext port fails at once, not retryable: the server is not speaking TLS', async () => {
    const peer = await createWrongPeer('HTTP/1.1 400 Bad Request\r\n\r\n', false);
    try {
      const failure = await failedConnect({ url: `kafka://app:s3cret@127.0.0.1:${peer.port}`, driver, tls: true });
      expectFatal(failure, /TLS handshake failed: the server is not speaking TLS/, ['s3cret'], 2_500);
      expect(failure.error.message).not.toMatch(/SSL routines/);
    } finally {
      await peer.close();
    }
  });

  it('a refused port is retried until the connect timeout, and the error says why (it said only "timed out")', async () => {
    const port = await freePort();
    const failure = await failedConnect({ url: `kafka://127.0.0.1:${port}`, driver, connectTimeoutMs: 1_000 });
    expect(failure.error.retryable).toBe(true);
    expect(failure.error.message).toMatch(/no connection within 1000 ms; last error: connect ECONNREFUSED/);
  });
});
