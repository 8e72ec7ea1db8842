import { redactText } from './redact.js';

/**
 * Any logger with these methods works: console-style `(message, fields)` (console, winston) or
 * fields-first `(fields, message)` (pino, bunyan: recognised by `child()` plus `bindings()`/`levels`/`fields`).
 */
export interface Logger {
  debug(message: string, fields?: Record<string, unknown>): void;
  info(message: string, fields?: Record<string, unknown>): void;
  warn(message: string, fields?: Record<string, unknown>): void;
  error(message: string, fields?: Record<string, unknown>): void;
}

/** Default: warnings and errors to stderr, nothing else. */
export const consoleLogger: Logger = {
  debug() {},
  info() {},
  warn(message, fields) {
    console.warn(`[busbar] ${message}`, ...(fields ? [fields] : []));
  },
  error(message, fields) {
    console.error(`[busbar] ${message}`, ...(fields ? [fields] : []));
  },
};

export const silentLogger: Logger = { debug() {}, info() {}, warn() {}, error() {} };

/**
 * True for loggers that take the fields first, `(fields, message)`: pino and bunyan (and their children).
 * Both have `child()`; pino has `bindings()` and `levels`, bunyan `fields`. Console-style loggers (console,
 * winston, most others) take the message first.
 */
export function isFieldsFirst(logger: Logger): boolean {
  const l = logger as unknown as Record<string, unknown>;
  if (typeof l.child !== 'function') return false;
  return (
    typeof l.bindings === 'function' ||
    (typeof l.levels === 'object' && l.levels !== null) ||
    typeof l.fields === 'object'
  );
}

/**
 * Wraps a logger so that no secret reaches it, whatever a driver or error puts in a line, and calls it the way
 * it wants to be called: pino/bunyan get `(fields, message)` (so the fields become structured, not lost),
 * everything else `(message, fields)`.
 *
 * A user's logger that throws (a closed file stream, a transport that is down) loses its line and nothing else:
 * busbar logs from settle paths, ack callbacks and timers, where a throw would leave a message unsettled or
 * become an unhandled rejection. The first failure is reported once as a process warning.
 */
export function redactingLogger(logger: Logger, secrets: readonly string[]): Logger {
  const fieldsFirst = isFieldsFirst(logger);
  let reported = false;
  const clean = (fields?: Record<string, unknown>): Record<string, unknown> | undefined => {
    if (!fields) return undefined;
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(fields)) {
      out[k] =
        v instanceof Error
          ? fieldsFirst
            ? { type: v.name, message: redactText(v.message, secrets) }
            : redactText(`${v.name}: ${v.message}`, secrets)
          : typeof v === 'string'
            ? redactText(v, secrets)
            : v;
    }
    return out;
  };
  const wrap =
    (level: keyof Logger) =>
    (message: string, fields?: Record<string, unknown>): void => {
      try {
        const cleaned = clean(fields);
        const text = redactText(message, secrets);
        const call = logger[level] as (...args: unknown[]) => void;
        if (fieldsFirst) call.call(logger, cleaned ?? {}, text);
        else if (cleaned) call.call(logger, text, cleaned);
        else call.call(logger, text);
      } catch (error) {
        if (reported) return;
        reported = true;
        // Only the error's class: its message may quote the line, and the line may be what failed.
        const name = error instanceof Error ? error.name : typeof error;
        process.emitWarning(`The logger threw ${name} at level '${level}'; busbar drops the lines it cannot log`, {
          code: 'BUSBAR_LOGGER_FAILED',
        });
      }
    };
  return { debug: wrap('debug'), info: wrap('info'), warn: wrap('warn'), error: wrap('error') };
}
