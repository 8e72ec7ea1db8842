import type { BusbarError } from '@busbar/core';
import {
  type NativeErrorClass,
  type NativeErrorContext,
  type NativeOperation,
  nativeError,
} from '@busbar/core/transport';

/** AMQP reply codes that mean the request itself is wrong, not that the broker is away (403 is auth's). */
const CONFIG_CODES = new Set([404, 406, 530, 540]);

function replyCode(error: unknown): number | undefined {
  const code = (error as { code?: unknown } | null)?.code;
  return typeof code === 'number' ? code : undefined;
}

// A login to a vhost that does not exist or that the user has no permissions on. RabbitMQ answers
// connection.open with connection.close (530 NOT_ALLOWED); amqplib 2.x reports only "Expected
// ConnectionOpenOk; got <ConnectionClose channel:0>" (the reason is lost), other versions the reason's text.
const VHOST_REFUSED = /NOT_ALLOWED - (?:access to )?vhost|Expected ConnectionOpenOk; got <ConnectionClose/;

/** True for a connect the broker refused at opening the vhost (after the login succeeded). */
export function isVhostRefused(error: unknown): boolean {
  return VHOST_REFUSED.test(String((error as Error | null)?.message ?? error));
}

// amqplib's words for an answer to its protocol header that is no AMQP 0-9-1 frame: a port of another protocol
// (Redis, NATS, HTTP), an AMQP 1.0 broker, or a TLS port's alert. The same port answers the same way again.
const NOT_AMQP =
  /Frame size \d+ exceeds maxFrameSize|\bInvalid frame\b|Unknown frame type|Frame on channel != 0 during handshake|Expected ConnectionStart; got/;

/** What a connect that got no AMQP 0-9-1 answer means, or undefined for any other failure. */
export function notAmqp(error: unknown): string | undefined {
  const text = String((error as Error | null)?.message ?? error);
  if (!NOT_AMQP.test(text)) return undefined;
  return `the server does not speak AMQP 0-9-1: its answer is no AMQP frame (${text}); is this the broker's AMQP port (5672, amqps 5671)?`;
}

/**
 * True for a refused login, vhost or permission: retrying cannot help. amqplib gives a refused login no code, only
 * the broker's text ("Handshake terminated by server: 403 (ACCESS-REFUSED) ..."), so the text decides too.
 */
export function isAuthFailure(error: unknown): boolean {
  const text = String((error as Error | null)?.message ?? error);
  return (
    replyCode(error) === 403 || /ACCESS_REFUSED|ACCESS-REFUSED|authentication/i.test(text) || isVhostRefused(error)
  );
}

/**
 * A publish the broker refused by closing its channel with ACCESS_REFUSED (a topic permission on the routing
 * key, or no write permission on the exchange): the reason when it names this message's routing key or
 * exchange, else undefined (other messages in flight on that channel only lost their confirm).
 */
export function refusedWrite(reason: unknown, exchange: string, routingKey: string): string | undefined {
  if (replyCode(reason) !== 403) return undefined;
  const text = String((reason as Error).message);
  const topic = /write access to topic '((?:[^']|'(?! in exchange))*)' in exchange/.exec(text);
  if (topic ? topic[1] !== routingKey : !text.includes(`exchange '${exchange}'`)) return undefined;
  return text.replace(/^Channel closed by server: /, '');
}

// RabbitMQ's close reasons: "PRECONDITION_FAILED - inequivalent arg 'x-queue-type' for queue 'q' in vhost '/':
// received the value 'quorum' of type 'longstr' but current is none" and "NOT_FOUND - no exchange 'x' in vhost '/'".
const INEQUIVALENT =
  /inequivalent arg '([^']*)' for (exchange|queue) '((?:[^']|'(?! in vhost))*)' in vhost '[^']*': (.*?)"?$/s;
const NOT_FOUND = /NOT_FOUND - no (exchange|queue) '((?:[^']|'(?! in vhost))*)' in vhost/;

/**
 * The broker's reason for a refused declaration, said in busbar's terms: which exchange or queue, which of its
 * arguments differs, and what to do about it. Undefined for any other error.
 */
export function topologyMismatch(text: string): string | undefined {
  const differs = INEQUIVALENT.exec(text);
  if (differs) {
    const [, arg, kind, name, detail] = differs;
    const fix =
      kind === 'exchange'
        ? "use another 'exchange' name, or topology: 'existing' to use it as it is"
        : "match the options it was declared with (queueType, limits, queueExpiresMs), or topology: 'existing' to use it as it is";
    return `${kind} '${name}' exists with other settings (PRECONDITION_FAILED): its argument '${arg}' differs (${detail}); ${fix}`;
  }
  const missing = NOT_FOUND.exec(text);
  if (missing) return `${missing[1]} '${missing[2]}' does not exist (NOT_FOUND)`;
  return undefined;
}

/**
 * What amqplib reports to a publish: the confirm callback's two errors (amqplib's exact texts), or its own
 * validation of the message while encoding it (a RangeError or TypeError: nothing was sent, and sending it
 * again cannot help).
 */
function publishClass(error: unknown, clean: Error): NativeErrorClass | undefined {
  if (clean.message === 'message nacked') return { kind: 'refused', retryable: true, message: 'the broker nacked it' };
  if (clean.message === 'channel closed') {
    return { kind: 'refused', retryable: true, message: 'outcome unknown (its channel closed before the confirm)' };
  }
  if (error instanceof RangeError || error instanceof TypeError) {
    // The header table over amqplib's encoding buffer (the transport checks sizes first; this is the backstop).
    return /field table|headers/i.test(clean.message) ? { kind: 'header' } : { kind: 'refused', retryable: false };
  }
  return undefined;
}

function classify(error: unknown, clean: Error, op: NativeOperation): NativeErrorClass | undefined {
  if (isAuthFailure(error)) return { kind: 'auth' };
  const code = replyCode(error);
  if (code === 406 || code === 404) {
    const mismatch = topologyMismatch(clean.message);
    if (mismatch !== undefined) return { kind: 'config', message: mismatch };
  }
  if (code !== undefined && CONFIG_CODES.has(code)) return { kind: 'config' };
  if (op === 'connect' && notAmqp(clean) !== undefined) return { kind: 'connection', retryable: false };
  return op === 'publish' ? publishClass(error, clean) : undefined;
}

/**
 * A native amqplib or socket error as a BusbarError (secrets always scrubbed): a refused login or permission
 * is a ConnectionError that is not retryable; a refused declaration (404, 406, ...) a ConfigError saying
 * which argument differs; a nack a retryable PublishError; the rest by core's common rules and `context.op`.
 */
export function toBusbarError(error: unknown, context: NativeErrorContext): BusbarError {
  return nativeError(error, context, (native, clean) => classify(native, clean, context.op));
}
