import type { BusbarError } from '@busbar/core';
import {
  type NativeErrorClass,
  type NativeErrorContext,
  type NativeOperation,
  nativeError,
} from '@busbar/core/transport';

/** ioredis' own words for a connection that is gone: such errors carry no socket code. */
const GONE = /Connection is closed|Stream isn't writeable|MaxRetriesPerRequest|max retries per request/;
/** Credentials Redis refused (AUTH, HELLO): the same ones fail again. */
const AUTH = /^(WRONGPASS|NOAUTH)\b/;
/** Redis cannot serve this now (loading, failing over, resharding, out of memory): the same command works later. */
const UNAVAILABLE = /^(LOADING|CLUSTERDOWN|MASTERDOWN|TRYAGAIN|MOVED|ASK|READONLY|BUSY|OOM)\b/;

/**
 * ioredis' parser on bytes that are no RESP reply (`Protocol error, got "H" as reply type byte`): a port of
 * another protocol answered (an HTTP server, another broker, a TLS port's alert), and will again.
 */
const NOT_RESP = /Protocol error, got .* as reply type byte/;

/** An error Redis itself answered with (ioredis' ReplyError), as opposed to a client or socket failure. */
function isReply(error: unknown): boolean {
  return error instanceof Error && error.name === 'ReplyError';
}

/**
 * ioredis and Redis errors by what they mean. A reply error on a publish is Redis saying no to the record
 * (a PublishError, retryable only when Redis is merely unavailable); the same reply on a read, an ack or a
 * declare is not a publish failure (issue: reads were reported as PublishErrors), so it falls through to
 * core's rule for the operation: a ConnectionError.
 */
function classify(error: unknown, clean: Error, op: NativeOperation): NativeErrorClass | undefined {
  const text = clean.message;
  if (op === 'connect' && NOT_RESP.test(text)) {
    const answer = /got (.*) as reply type byte/.exec(text)?.[1] ?? '?';
    return {
      kind: 'connection',
      retryable: false,
      message: `the server does not speak Redis: its answer is no RESP reply (it began with ${answer}); is this Redis' port (6379)?`,
    };
  }
  if (GONE.test(text)) return { kind: 'connection' };
  if (AUTH.test(text)) return { kind: 'auth' };
  if (!isReply(error)) return undefined;
  if (op === 'publish') return { kind: 'refused', retryable: UNAVAILABLE.test(text) };
  // The topic's key holds a string, hash or list (someone else's key of the same name): no retry changes that.
  if (text.includes('WRONGTYPE')) return { kind: 'topic' };
  // An ACL that forbids a command or key: no retry fixes it, as with wrong credentials.
  if (text.startsWith('NOPERM')) return { kind: 'auth' };
  return undefined;
}

/**
 * An ioredis error as a BusbarError, by core's one mapper. ioredis attaches the command and its arguments
 * to errors (for AUTH: the password), so the native error only travels as a sanitized copy.
 */
export function toBusbarError(error: unknown, context: NativeErrorContext): BusbarError {
  return nativeError(error, context, (native, clean) => classify(native, clean, context.op));
}

/** True for a reply error whose message starts with `prefix` (e.g. `BUSYGROUP`, `NOGROUP`). */
export function isReplyError(error: unknown, prefix: string): boolean {
  return error instanceof Error && error.message.startsWith(prefix);
}
