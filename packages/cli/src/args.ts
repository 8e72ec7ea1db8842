import { parseArgs } from 'node:util';
import { UsageError } from './errors.js';

/** Every flag of every command; each command says which of them it takes (see `Command.flags`). */
export const FLAGS = {
  url: { type: 'string' },
  option: { type: 'string', short: 'o', multiple: true },
  name: { type: 'string' },
  'connect-timeout': { type: 'string' },
  json: { type: 'boolean' },
  quiet: { type: 'boolean', short: 'q' },
  help: { type: 'boolean', short: 'h' },
  group: { type: 'string', short: 'g' },
  limit: { type: 'string' },
  idle: { type: 'string' },
  error: { type: 'string' },
  'older-than': { type: 'string' },
  'newer-than': { type: 'string' },
  id: { type: 'string', multiple: true },
  rate: { type: 'string' },
  'dry-run': { type: 'boolean' },
  yes: { type: 'boolean', short: 'y' },
  key: { type: 'string' },
  header: { type: 'string', short: 'H', multiple: true },
  count: { type: 'string' },
  timeout: { type: 'string' },
  topic: { type: 'string' },
} as const;

export type Flag = keyof typeof FLAGS;
export type Values = ReturnType<typeof parse>['values'];

/** Flags every command that connects takes. */
export const CONNECTION_FLAGS: readonly Flag[] = ['url', 'option', 'name', 'connect-timeout', 'json', 'quiet', 'help'];

export function parse(argv: readonly string[]) {
  try {
    return parseArgs({ args: [...argv], options: FLAGS, allowPositionals: true, strict: true });
  } catch (error) {
    // node:util's messages are already user-facing ("Unknown option '--x'"); keep them, typed.
    throw new UsageError(error instanceof Error ? error.message : String(error));
  }
}

/** Rejects flags that exist but mean nothing for this command, so a typo'd invocation does not silently ignore them. */
export function onlyFlags(values: Values, allowed: readonly Flag[], command: string): void {
  for (const name of Object.keys(values) as Flag[]) {
    if (values[name] !== undefined && !allowed.includes(name) && !CONNECTION_FLAGS.includes(name)) {
      throw new UsageError(`--${name} does not apply to '${command}'`);
    }
  }
}

/** Node's longest timer (about 24.8 days): a longer one fires at once, so time flags stop there. */
export const MAX_MS = 2_147_483_647;

export function positiveInt(
  value: string | undefined,
  flag: string,
  max = Number.MAX_SAFE_INTEGER,
): number | undefined {
  if (value === undefined) return undefined;
  const n = Number(value);
  if (!/^\d+$/.test(value) || !Number.isSafeInteger(n) || n <= 0) {
    throw new UsageError(`--${flag} must be a positive whole number, got '${value}'`);
  }
  if (n > max) throw new UsageError(`--${flag} must be at most ${max}, got '${value}'`);
  return n;
}

export function positiveNumber(value: string | undefined, flag: string, min = 0): number | undefined {
  if (value === undefined) return undefined;
  const n = Number(value);
  if (value.trim() === '' || !Number.isFinite(n) || n <= min) {
    throw new UsageError(`--${flag} must be a number above ${min}, got '${value}'`);
  }
  return n;
}

const UNITS: Record<string, number> = { ms: 1, s: 1_000, m: 60_000, h: 3_600_000, d: 86_400_000 };

/** `500ms`, `30s`, `15m`, `2h`, `7d` (a bare number is milliseconds) -> milliseconds. */
export function duration(value: string | undefined, flag: string): number | undefined {
  if (value === undefined) return undefined;
  const match = /^(\d+(?:\.\d+)?)(ms|s|m|h|d)?$/.exec(value.trim());
  const ms = match ? Number(match[1]) * (UNITS[match[2] ?? 'ms'] ?? 1) : Number.NaN;
  if (!Number.isFinite(ms) || ms < 0) {
    throw new UsageError(`--${flag} must be a duration such as 500ms, 30s, 15m, 2h or 7d, got '${value}'`);
  }
  return ms;
}

/** `key=value` pairs (headers, driver options). */
export function pairs(values: readonly string[] | undefined, flag: string): [string, string][] {
  return (values ?? []).map((entry) => {
    const at = entry.indexOf('=');
    if (at <= 0) throw new UsageError(`--${flag} takes key=value, got '${entry}'`);
    return [entry.slice(0, at), entry.slice(at + 1)];
  });
}

/** The one positional topic a command needs. */
export function topicArg(positionals: readonly string[], command: string): string {
  const topic = positionals[0];
  if (topic === undefined || topic === '') throw new UsageError(`'${command}' needs a topic`);
  return topic;
}
