import { type BusbarError, InvalidHeaderError, PayloadTooLargeError } from '@busbar/core';
import {
  type NativeErrorClass,
  type NativeErrorContext,
  type NativeErrorKind,
  type NativeOperation,
  nativeError,
} from '@busbar/core/transport';

/** nats.js' `NatsError.code`s and what they mean for busbar; codes not listed fall to core's rules. */
const KINDS: ReadonlyMap<string, NativeErrorKind> = new Map<string, NativeErrorKind>([
  ['TIMEOUT', 'timeout'],
  ['BAD_HEADER', 'header'],
  ['BAD_SUBJECT', 'config'],
  ['INVALID_OPTION', 'config'],
  ['CONNECTION_CLOSED', 'connection'],
  ['CONNECTION_DRAINING', 'connection'],
  ['CONNECTION_REFUSED', 'connection'],
  ['CONNECTION_TIMEOUT', 'connection'],
  ['DISCONNECT', 'connection'],
  ['AUTHENTICATION_TIMEOUT', 'connection'],
  // The same credentials fail the same way again: not retryable.
  ['BAD_AUTHENTICATION', 'auth'],
  ['BAD_CREDS', 'auth'],
  ['AUTHORIZATION_VIOLATION', 'auth'],
  ['AUTHENTICATION_EXPIRED', 'auth'],
  ['ACCOUNT_EXPIRED', 'auth'],
  ['PERMISSIONS_VIOLATION', 'auth'],
  ['TLS', 'tls'],
]);

/**
 * A dial that met no NATS server: nats.js' words for a first line that is no INFO (a port of another protocol
 * that speaks first: the same port answers the same way again), and for a server that hung up before sending
 * one (it reports that as CONNECTION_REFUSED, though the port took the connection: may pass).
 */
function dialClass(error: unknown): NativeErrorClass | undefined {
  if (!(error instanceof Error)) return undefined;
  if (error.message === 'unexpected response from server') {
    return {
      kind: 'connection',
      retryable: false,
      message: 'the server does not speak NATS: its first line is no NATS INFO; is this the NATS client port (4222)?',
    };
  }
  const chained = (error as { chainedError?: unknown }).chainedError;
  if (chained instanceof Error && chained.message === 'node provided an undefined error!') {
    return {
      kind: 'connection',
      message:
        'the server hung up without a NATS INFO: a port of another protocol, a TLS port, or a server that is stopping or at its connection limit',
    };
  }
  return undefined;
}

function classify(error: unknown, op: NativeOperation): NativeErrorClass | undefined {
  if (op === 'connect') {
    const dial = dialClass(error);
    if (dial !== undefined) return dial;
  }
  const code = (error as { code?: unknown } | undefined)?.code;
  // The client asked for TLS (`tls` option) and the server offers none: the same on every attempt.
  if (code === 'SERVER_OPT_NA' && (error as Error).message === 'tls') {
    return { kind: 'tls', message: 'TLS was asked for (the tls option) but the server does not offer it' };
  }
  const kind = typeof code === 'string' ? KINDS.get(code) : undefined;
  if (kind !== undefined) return { kind };
  // The JetStream API answered no (a stream config it refuses, a name in use): asking again gets the same answer.
  if (apiErrorCode(error) !== undefined) return { kind: 'refused', retryable: false };
  return undefined;
}

/** A native (nats.js / server) error as a busbar error, redacted; `context.what` says what was being done. */
export function toBusbarError(error: unknown, context: NativeErrorContext): BusbarError {
  return nativeError(error, context, (native) => classify(native, context.op));
}

/** The JetStream API error code (e.g. 10058 stream name in use), when there is one. */
export function apiErrorCode(error: unknown): number | undefined {
  const api = (error as { api_error?: { err_code?: unknown } } | undefined)?.api_error;
  return typeof api?.err_code === 'number' ? api.err_code : undefined;
}

/** A JetStream "stream not found" or "consumer not found" answer. */
export function isNotFound(error: unknown): boolean {
  const code = apiErrorCode(error);
  if (code === 10059 || code === 10014) return true;
  const message = error instanceof Error ? error.message : '';
  return message === 'stream not found' || message === 'consumer not found';
}

/**
 * A native error nats.js throws synchronously from `publish()` (it checks the server's `max_payload` and the
 * header syntax itself) as busbar's typed error for that record, or undefined for anything else.
 */
export function publishRefusal(error: unknown, topic: string, size: number, max: number): BusbarError | undefined {
  const code = (error as { code?: unknown } | undefined)?.code;
  if (code === 'MAX_PAYLOAD_EXCEEDED') return new PayloadTooLargeError(size, max, topic);
  if (code === 'BAD_HEADER') {
    return new InvalidHeaderError(
      `A header of the message for '${topic}' cannot be carried by NATS: ${(error as Error).message}`,
    );
  }
  return undefined;
}
