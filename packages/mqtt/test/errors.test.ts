import { BusbarError, ConnectionError } from '@busbar/core';
import { ErrorWithReasonCode, ErrorWithSubackPacket } from 'mqtt';
import { describe, expect, it } from 'vitest';
import { reasonText, toBusbarError } from '../src/errors.js';

const publish = { what: "Publish to 'a/b'", op: 'publish', secrets: ['s3cret'] } as const;
const connecting = { what: 'Cannot connect to MQTT broker mqtt://h:1883', op: 'connect', secrets: ['s3cret'] } as const;

/** mqtt.js's own error type for a broker's reason code (PUBACK, CONNACK, SUBACK, DISCONNECT). */
const reason = (code: number, message = 'refused') => new ErrorWithReasonCode(message, code);

describe('mqtt toBusbarError', () => {
  it('a PUBACK refusal is a PublishError naming the reason, retryable only for quota, busy or unavailable', () => {
    const denied = toBusbarError(reason(0x87), publish);
    expect(BusbarError.is(denied, 'BUSBAR_PUBLISH')).toBe(true);
    expect(denied.retryable).toBe(false);
    expect(denied.message).toBe("Publish to 'a/b': the broker refused it: not authorized (0x87)");
    for (const code of [0x97, 0x89, 0x88])
      expect(toBusbarError(reason(code), publish).retryable, String(code)).toBe(true);
    expect(toBusbarError(reason(0x99), { ...publish, op: 'request' }).retryable).toBe(false);
  });

  it('a CONNACK refusal is a ConnectionError: credentials, ban, client id and protocol are not retryable', () => {
    for (const code of [0x86, 0x87, 0x8a, 0x8c, 0x84, 0x85]) {
      const error = toBusbarError(reason(code), connecting);
      expect(BusbarError.is(error, 'BUSBAR_CONNECTION'), String(code)).toBe(true);
      expect(error.retryable, String(code)).toBe(false);
      expect(error.message).toContain(`(0x${code.toString(16)})`);
    }
    expect(toBusbarError(reason(0x87), connecting).message).toBe(
      'Cannot connect to MQTT broker mqtt://h:1883: the broker refused the login: not authorized (0x87)',
    );
    const busy = toBusbarError(reason(0x89), connecting);
    expect(busy.retryable).toBe(true);
    expect(busy.message).toBe('Cannot connect to MQTT broker mqtt://h:1883: server busy (0x89)');
  });

  it('a refused SUBACK (mqtt.js rejects with the packet, no code) names its reason and is not retryable', () => {
    const subscribing = { what: "Subscribing to 'secret/x'", op: 'consume', secrets: [] } as const;
    const suback = (code: number) =>
      new ErrorWithSubackPacket('Subscribe error: refused', {
        cmd: 'suback',
        messageId: 1,
        granted: [code],
      } as unknown as ConstructorParameters<typeof ErrorWithSubackPacket>[1]);
    const denied = toBusbarError(suback(0x87), subscribing);
    expect(BusbarError.is(denied, 'BUSBAR_CONNECTION')).toBe(true);
    expect(denied.retryable).toBe(false);
    expect(denied.message).toBe("Subscribing to 'secret/x': not authorized (0x87)");
    for (const code of [0x8f, 0x9e, 0xa2])
      expect(toBusbarError(suback(code), subscribing).retryable, String(code)).toBe(false);
    expect(toBusbarError(suback(0x97), subscribing).retryable).toBe(true);
  });

  it('socket errors follow the common rules; other errors the operation; secrets never show', () => {
    const refused = Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:1 s3cret'), { code: 'ECONNREFUSED' });
    const error = toBusbarError(refused, publish);
    expect(error).toBeInstanceOf(ConnectionError);
    expect(error.message).not.toContain('s3cret');
    expect(JSON.stringify(error.cause)).not.toContain('s3cret');
    const other = toBusbarError(new Error('client disconnecting'), publish);
    expect(BusbarError.is(other, 'BUSBAR_PUBLISH')).toBe(true);
    expect(other.retryable).toBe(true);
    expect(toBusbarError('closed', connecting).message).toBe('Cannot connect to MQTT broker mqtt://h:1883: closed');
    const same = new ConnectionError('already typed');
    expect(toBusbarError(same, publish)).toBe(same);
  });

  it('reasonText names known codes and shows unknown ones in hex', () => {
    expect(reasonText(0x95)).toBe('packet too large (0x95)');
    expect(reasonText(0xa3)).toBe('reason code (0xa3)');
    expect(reasonText(undefined)).toBe('');
  });
});
