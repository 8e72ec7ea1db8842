import type { BusbarError } from '@busbar/core';
import type { NativeErrorClass, NativeErrorContext } from '@busbar/core/transport';
import { nativeError } from '@busbar/core/transport';

/** MQTT 5 reason codes worth naming in errors. */
const REASONS: Readonly<Record<number, string>> = {
  128: 'unspecified error',
  131: 'implementation specific error (Mosquitto: message_size_limit or plugin)',
  133: 'client identifier not valid',
  134: 'bad user name or password',
  135: 'not authorized',
  136: 'server unavailable',
  137: 'server busy',
  138: 'banned',
  140: 'bad authentication method',
  142: 'session taken over by another client with the same client id',
  143: 'topic filter invalid',
  144: 'topic name invalid',
  149: 'packet too large',
  151: 'quota exceeded',
  153: 'payload format invalid',
  158: 'shared subscriptions not supported',
  161: 'subscription identifiers not supported',
  162: 'wildcard subscriptions not supported',
};

/** `not authorized (0x87)`: a reason code as people and logs read it. */
export function reasonText(code: number | undefined): string {
  if (code === undefined) return '';
  return `${REASONS[code] ?? 'reason code'} (0x${code.toString(16)})`;
}

/** CONNACK codes that say the credentials or identity are refused: the same connect fails again. */
const AUTH = new Set([0x86, 0x87, 0x8a, 0x8c]);
/**
 * Codes that no retry with the same settings gets past: a CONNACK's protocol version or client id, a SUBACK's
 * topic filter or a feature the broker lacks (shared subscriptions, wildcards, subscription ids).
 */
const SETTINGS = new Set([0x84, 0x85, 0x8f, 0x9e, 0xa1, 0xa2]);
/** Refusals that may pass later (the broker's quota, load or availability), not the message itself. */
const TRANSIENT = new Set([0x88, 0x89, 0x97]);

/**
 * The MQTT reason code of an mqtt.js error from a CONNACK, PUBACK or DISCONNECT (`code`), or of a refused
 * SUBACK: `subscribeAsync` rejects with the SUBACK packet and no code, so the first refusal in `granted` counts.
 */
function reasonCode(error: unknown): number | undefined {
  const code = (error as { code?: unknown } | null)?.code;
  if (typeof code === 'number') return code;
  const granted = (error as { packet?: { granted?: unknown } } | null)?.packet?.granted;
  if (!Array.isArray(granted)) return undefined;
  return granted.find((g): g is number => typeof g === 'number' && g >= 0x80);
}

// mqtt-packet's words for bytes that are no MQTT packet (mqtt.js passes its parser's errors on as they are).
const NOT_A_PACKET =
  /^(Invalid header flag bits|Invalid (?:packet|length|protocolId|protocol version|variable byte integer|connack flags)|Malformed|Cannot parse|Packet (?:too short|must not)|Unknown property|Not supported)/;

/**
 * What a connect whose answer is no MQTT packet (or a packet that is not the CONNACK a broker answers first)
 * means, or undefined for any other error: a port of another protocol answered, and will again.
 */
export function notMqtt(error: unknown): string | undefined {
  if (!(error instanceof Error) || (error as { code?: unknown }).code !== undefined) return undefined;
  if (!NOT_A_PACKET.test(error.message)) return undefined;
  return `the server does not speak MQTT: its answer is not a CONNACK (${error.message}); is this the broker's MQTT port (1883, mqtts 8883)?`;
}

/**
 * An mqtt.js error as a BusbarError, by core's `nativeError`. The broker's reason codes (>= 0x80) are read
 * here: on a publish or request, a refusal of that message (a PublishError, retryable only for quota, busy
 * or unavailable); elsewhere (CONNACK, SUBACK), bad credentials, a ban or a subscription the ACL refuses are
 * auth failures and a refused protocol version, client id or topic filter a connection failure, none of them
 * retryable; other codes retryable connection failures.
 * Socket and TLS errors follow core's common rules.
 */
export function toBusbarError(error: unknown, context: NativeErrorContext): BusbarError {
  return nativeError(error, context, (native): NativeErrorClass | undefined => {
    const foreign = context.op === 'connect' ? notMqtt(native) : undefined;
    if (foreign !== undefined) return { kind: 'connection', retryable: false, message: foreign };
    const code = reasonCode(native);
    if (code === undefined || code < 0x80) return undefined;
    const text = reasonText(code);
    if (context.op === 'publish' || context.op === 'request') {
      return { kind: 'refused', retryable: TRANSIENT.has(code), message: `the broker refused it: ${text}` };
    }
    if (AUTH.has(code)) {
      // Mosquitto answers a wrong password with 0x87 rather than 0x86: say what a refused CONNECT means.
      return { kind: 'auth', message: context.op === 'connect' ? `the broker refused the login: ${text}` : text };
    }
    return SETTINGS.has(code)
      ? { kind: 'connection', retryable: false, message: text }
      : { kind: 'connection', message: text };
  });
}
