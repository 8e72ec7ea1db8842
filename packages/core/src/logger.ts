import { redactText } from './redact.js';

/** Any logger with these methods works (console, pino, winston). */
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

/** Wraps a logger so that no secret reaches it, whatever a driver or error puts in a line. */
export function redactingLogger(logger: Logger, secrets: readonly string[]): Logger {
  const clean = (fields?: Record<string, unknown>): Record<string, unknown> | undefined => {
    if (!fields) return undefined;
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(fields)) {
      out[k] =
        v instanceof Error
          ? redactText(`${v.name}: ${v.message}`, secrets)
          : typeof v === 'string'
            ? redactText(v, secrets)
            : v;
    }
    return out;
  };
  const wrap =
    (level: keyof Logger) =>
    (message: string, fields?: Record<string, unknown>): void => {
      const cleaned = clean(fields);
      if (cleaned) logger[level](redactText(message, secrets), cleaned);
      else logger[level](redactText(message, secrets));
    };
  return { debug: wrap('debug'), info: wrap('info'), warn: wrap('warn'), error: wrap('error') };
}
