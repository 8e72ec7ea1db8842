import { brokerAvailable, brokerUrls, createWrongPeer, expectFatal, failedConnect } from '@busbar/testing';
import { describe, expect, it } from 'vitest';
import { notAmqp, toBusbarError } from '../src/errors.js';
import { driver } from '../src/index.js';

// The portable cases (an HTTP server, random bytes) are the conformance suite's 'wrong peer'; these are AMQP's own.
const ok = await brokerAvailable('rabbitmq');
const connecting = { what: 'Connecting failed', op: 'connect', secrets: [] } as const;

describe('rabbitmq: connect to a port that is not AMQP 0-9-1', () => {
  it("amqplib's words for an answer that is no AMQP frame are a connect failure that is not retryable and says why", () => {
    for (const text of [
      'Frame size 1345270062 exceeds maxFrameSize 67108864',
      'Invalid frame',
      'Unknown frame type 72',
      'Frame on channel != 0 during handshake: {}',
      'Expected ConnectionStart; got <ConnectionClose channel:0>',
    ]) {
      const error = toBusbarError(new Error(text), connecting);
      expect(error.code, text).toBe('BUSBAR_CONNECTION');
      expect(error.retryable, text).toBe(false);
      expect(notAmqp(new Error(text)), text).toMatch(/does not speak AMQP 0-9-1/);
    }
    // A refused vhost reads like a handshake surprise too, but it is the broker's answer: still the auth failure.
    const vhost = toBusbarError(new Error('Expected ConnectionOpenOk; got <ConnectionClose channel:0>'), connecting);
    expect(vhost.retryable).toBe(false);
    expect(notAmqp(new Error('Expected ConnectionOpenOk; got <ConnectionClose channel:0>'))).toBeUndefined();
    // Once connected, the same words are no verdict on the peer.
    expect(toBusbarError(new Error('Invalid frame'), { ...connecting, op: 'consume' }).retryable).toBe(true);
  });

  it('amqps:// at a plaintext port fails at once, not retryable: the server is not speaking TLS', async () => {
    const peer = await createWrongPeer('HTTP/1.1 400 Bad Request\r\n\r\n', false);
    try {
      const failure = await failedConnect({ url: `amqps://app:s3cret@127.0.0.1:${peer.port}`, driver });
      expectFatal(failure, /TLS handshake failed: the server is not speaking TLS/, ['s3cret'], 2_500);
      expect(failure.error.message).not.toMatch(/SSL routines/);
    } finally {
      await peer.close();
    }
  });

  it.runIf(ok)("amqps:// at the broker's plaintext AMQP port fails at once, not retryable", async () => {
    const plain = new URL(brokerUrls.rabbitmq);
    const failure = await failedConnect({ url: `amqps://guest:guest@${plain.host}`, driver });
    expectFatal(failure, /the server is not speaking TLS/, [], 2_500);
  });
});
