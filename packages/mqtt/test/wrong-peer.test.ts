import { createWrongPeer, expectFatal, failedConnect } from '@busbar/testing';
import { describe, expect, it } from 'vitest';
import { notMqtt, toBusbarError } from '../src/errors.js';
import { driver } from '../src/index.js';

// The portable cases (an HTTP server, random bytes) are the conformance suite's 'wrong peer'; these are MQTT's own.
const connecting = { what: 'Cannot connect to MQTT broker mqtt://h:1883', op: 'connect', secrets: [] } as const;

describe('mqtt: connect to a port that is not MQTT', () => {
  it("mqtt-packet's words for bytes that are no MQTT packet fail a connect for good, and only a connect", () => {
    for (const text of ['Invalid header flag bits, must be 0x0 for puback packet', 'Malformed Subscribe Payload']) {
      const error = toBusbarError(new Error(text), connecting);
      expect(error.code, text).toBe('BUSBAR_CONNECTION');
      expect(error.retryable, text).toBe(false);
      expect(error.message).toMatch(/does not speak MQTT/);
    }
    // mqtt.js' own timeouts and socket errors are no verdict on the peer.
    expect(notMqtt(new Error('connack timeout'))).toBeUndefined();
    expect(notMqtt(Object.assign(new Error('Invalid frame'), { code: 'ECONNRESET' }))).toBeUndefined();
    expect(toBusbarError(new Error('Invalid header flag bits'), { ...connecting, op: 'consume' }).retryable).toBe(true);
  });

  it('a peer whose first packet is not a CONNACK (a PINGRESP) fails the connect at once, not retryable', async () => {
    const peer = await createWrongPeer(Buffer.from([0xd0, 0x00]), false);
    try {
      const failure = await failedConnect({ url: `mqtt://127.0.0.1:${peer.port}`, driver });
      expectFatal(failure, /does not speak MQTT: .*pingresp packet came before any CONNACK/, [], 2_500);
    } finally {
      await peer.close();
    }
  });

  it('mqtts:// at a plaintext port fails at once, not retryable (it was retried until the connect timeout)', async () => {
    const peer = await createWrongPeer('HTTP/1.1 400 Bad Request\r\n\r\n', false);
    try {
      const failure = await failedConnect({ url: `mqtts://app:s3cret@127.0.0.1:${peer.port}`, driver });
      expectFatal(failure, /TLS handshake failed: the server is not speaking TLS/, ['s3cret'], 2_500);
    } finally {
      await peer.close();
    }
  });
});
