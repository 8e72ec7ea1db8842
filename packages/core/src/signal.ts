import { ConfigError } from './errors.js';

/**
 * `signal` when it is an AbortSignal, undefined when it is absent; anything else is a ConfigError saying
 * `Invalid <what>: ...`. By shape, not `instanceof`: a signal from another realm (a vm context, a worker's
 * transferred copy) or an AbortController polyfill has all that busbar uses.
 */
export function checkSignal(signal: unknown, what: string): AbortSignal | undefined {
  if (signal === undefined) return undefined;
  const s = signal as { aborted?: unknown; addEventListener?: unknown; removeEventListener?: unknown } | null;
  if (
    typeof s === 'object' &&
    s !== null &&
    typeof s.aborted === 'boolean' &&
    typeof s.addEventListener === 'function' &&
    typeof s.removeEventListener === 'function'
  ) {
    return signal as AbortSignal;
  }
  throw new ConfigError(`Invalid ${what}: signal must be an AbortSignal`);
}

/** The `signal` of an options object (`{ signal? }`), checked, and the object itself must be one. */
export function signalOf(options: unknown, what: string): AbortSignal | undefined {
  if (typeof options !== 'object' || options === null) throw new ConfigError(`${what} must be an object`);
  return checkSignal((options as { signal?: unknown }).signal, what);
}
