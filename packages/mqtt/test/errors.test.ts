import { BusbarError, ConnectionError } from '@busbar/core';
import { ErrorWithReasonCode } from 'mqtt';
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
    const busy = toBusbarError(reason(0x89), connecting);
    expect(busy.retryable).toBe(true);
    expect(busy.message).toBe('Cannot connect to MQTT broker mqtt://h:1883: server busy (0x89)');
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
    expect(reasonText(0xa2)).toBe('reason code (0xa2)');
    expect(reasonText(undefined)).toBe('');
  });
});
