import { BusbarError } from '@busbar/core';
import type { NativeOperation } from '@busbar/core/transport';
import { ReplyError } from 'ioredis';
import { describe, expect, it } from 'vitest';
import { decodeOrUndecodable } from '../src/delivery.js';
import { toBusbarError } from '../src/errors.js';

/** A reply error exactly as ioredis raises it (redis-errors' ReplyError). */
function reply(message: string): Error {
  return new ReplyError(message) as Error;
}

const map = (error: unknown, op: NativeOperation, secrets: readonly string[] = []) =>
  toBusbarError(error, { what: 'Doing it', op, secrets });

describe('redis toBusbarError', () => {
  it('a reply error is a PublishError only on a publish; on a read it is a ConnectionError', () => {
    const publish = map(reply('WRONGTYPE Operation against a key holding the wrong kind of value'), 'publish');
    expect(BusbarError.is(publish, 'BUSBAR_PUBLISH')).toBe(true);
    expect(publish.retryable).toBe(false);
    expect(publish.message).toBe('Doing it: WRONGTYPE Operation against a key holding the wrong kind of value');
    for (const op of ['consume', 'declare', 'request'] as const) {
      const read = map(reply('ERR unknown command'), op);
      expect(BusbarError.is(read, 'BUSBAR_CONNECTION')).toBe(true);
    }
  });

  it('a topic whose key holds another Redis type (WRONGTYPE) is an InvalidTopicError off the publish path', () => {
    for (const op of ['consume', 'declare', 'request'] as const) {
      const read = map(reply('WRONGTYPE Operation against a key holding the wrong kind of value'), op);
      expect(BusbarError.is(read, 'BUSBAR_INVALID_TOPIC')).toBe(true);
      expect(read.retryable).toBe(false);
      expect(read.message).toContain('WRONGTYPE');
    }
  });

  it('Redis being unavailable makes a publish retryable; credentials and ACLs are never retryable', () => {
    for (const text of ['LOADING Redis is loading', 'OOM command not allowed', 'TRYAGAIN', 'CLUSTERDOWN down']) {
      const error = map(reply(text), 'publish');
      expect(BusbarError.is(error, 'BUSBAR_PUBLISH')).toBe(true);
      expect(error.retryable).toBe(true);
    }
    const wrongpass = map(reply('WRONGPASS invalid username-password pair'), 'publish');
    expect(BusbarError.is(wrongpass, 'BUSBAR_CONNECTION')).toBe(true);
    expect(wrongpass.retryable).toBe(false);
    const noperm = map(reply("NOPERM this user has no permissions to run the 'xreadgroup' command"), 'consume');
    expect(BusbarError.is(noperm, 'BUSBAR_CONNECTION')).toBe(true);
    expect(noperm.retryable).toBe(false);
    expect(BusbarError.is(map(reply('NOPERM no'), 'publish'), 'BUSBAR_PUBLISH')).toBe(true);
  });

  it("ioredis' own words for a lost connection and socket codes are ConnectionErrors on every operation", () => {
    const refused = Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:1'), { code: 'ECONNREFUSED' });
    for (const op of ['publish', 'consume'] as const) {
      expect(BusbarError.is(map(new Error('Connection is closed.'), op), 'BUSBAR_CONNECTION')).toBe(true);
      expect(BusbarError.is(map(refused, op), 'BUSBAR_CONNECTION')).toBe(true);
    }
  });

  it('keeps secrets out of the message and the cause', () => {
    const error = map(reply('ERR wrong number of arguments, AUTH s3cret-pw'), 'consume', ['s3cret-pw']);
    expect(error.message).not.toContain('s3cret-pw');
    expect(String((error.cause as Error).message)).not.toContain('s3cret-pw');
  });
});

describe('redis undecodable entries', () => {
  it('an entry the decoder cannot read goes to core as an empty JSON body (dead-lettered, not skipped)', () => {
    // Fields of a shape no Redis reply has (what a future reply shape could look like): the decoder throws.
    const entry = decodeOrUndecodable('1700000000000-1', [null, 7] as unknown as Buffer[]);
    expect(entry).toMatchObject({ id: '1700000000000-1', contentType: 'application/json', timestamp: 1700000000000 });
    expect(entry.body.byteLength).toBe(0);
  });
});
