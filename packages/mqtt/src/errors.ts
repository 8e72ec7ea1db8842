import { BusbarError, ConnectionError, PublishError, TimeoutError } from '@busbar/core';
import { sanitizeError } from '@busbar/core/transport';

/** MQTT 5 reason codes worth naming in errors. */
const REASONS: Readonly<Record<number, string>> = {
  128: 'unspecified error',
  131: 'implementation specific error (Mosquitto: message_size_limit or plugin)',
  135: 'not authorized',
  142: 'session taken over by another client with the same client id',
  144: 'topic name invalid',
  149: 'packet too large',
  151: 'quota exceeded',
  153: 'payload format invalid',
  134: 'bad user name or password',
  136: 'server unavailable',
  138: 'banned',
  133: 'client identifier not valid',
};

export function reasonText(code: number | undefined): string {
  if (code === undefined) return '';
  return `${REASONS[code] ?? 'reason code'} (0x${code.toString(16)})`;
}

function codeOf(error: unknown): number | undefined {
  const code = (error as { code?: unknown } | null)?.code;
  return typeof code === 'number' ? code : undefined;
}

/** A failed PUBACK/PUBREC or a lost connection during a publish. */
export function publishError(error: unknown, secrets: readonly string[]): BusbarError {
  if (BusbarError.is(error)) return error;
  const clean = sanitizeError(error, secrets);
  const code = codeOf(error);
  if (code !== undefined && code >= 0x80) {
    // The broker answered: retrying the same message will not help unless it is a quota.
    return new PublishError(`The MQTT broker refused the message: ${reasonText(code)}`, {
      cause: clean,
      retryable: code === 0x97 || code === 0x88,
    });
  }
  return new PublishError(`MQTT publish failed: ${clean.message}`, { cause: clean });
}

export function connectionError(error: unknown, where: string, secrets: readonly string[]): ConnectionError {
  const clean = sanitizeError(error, secrets);
  const code = codeOf(error);
  const detail = code !== undefined && code >= 0x80 ? reasonText(code) : clean.message;
  return new ConnectionError(`Cannot connect to MQTT broker ${where}: ${detail}`, { cause: clean });
}

export function publishTimeout(ms: number): TimeoutError {
  return new TimeoutError(`MQTT publish not acknowledged within ${ms} ms (the broker may still have it)`);
}
