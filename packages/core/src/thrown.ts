import { inspect } from 'node:util';
import { BusbarError, PermanentError } from './errors.js';

/**
 * Handlers can throw anything: `null`, a number, `Object.create(null)`, an Error whose `message` getter
 * throws, a Proxy that throws on every trap. Everything core does with a failure (retry decision, dead-letter
 * headers, events, logs) reads the thrown value, so it is turned into a plain, safe Error once, here, and a
 * read that throws can never leave a message unsettled.
 */

const MAX_DESCRIPTION = 500;

/** What a handler threw when it was not an Error: its description is bounded and never throws to compute. */
export class NonErrorThrown extends Error {
  /** The value as thrown (for a debugger); core never reads it again. */
  readonly thrown: unknown;
  constructor(description: string, thrown: unknown) {
    super(description);
    this.thrown = thrown;
  }
  override get name(): string {
    return 'NonErrorThrown';
  }
}

function attempt<T>(read: () => T, fallback: T): T {
  try {
    return read();
  } catch {
    return fallback;
  }
}

function bounded(text: string): string {
  return text.length > MAX_DESCRIPTION ? `${text.slice(0, MAX_DESCRIPTION)}...` : text;
}

/** A short description of any value, computed without running its getters or traps. */
export function describeThrown(value: unknown): string {
  if (value === null) return 'null';
  if (value === undefined) return 'undefined';
  const kind = typeof value;
  if (kind === 'string') return JSON.stringify(bounded(value as string));
  if (kind === 'number' || kind === 'boolean' || kind === 'bigint') return `${kind} ${String(value)}`;
  if (kind === 'symbol') return attempt(() => (value as symbol).toString(), 'a symbol');
  if (kind === 'function') return 'a function';
  const shown = attempt(
    () => inspect(value, { depth: 1, breakLength: Number.POSITIVE_INFINITY, getters: false, showProxy: true }),
    'an object that cannot be inspected',
  );
  return bounded(shown);
}

function isSafeError(value: unknown): value is Error {
  if (!attempt(() => value instanceof Error, false)) return false;
  const error = value as Error;
  // Each of these is read later (dead-letter headers, logs, events): a throwing getter disqualifies the error.
  return attempt(() => {
    const parts = [error.name, error.message, error.stack];
    return parts.every((p) => p === undefined || typeof p === 'string');
  }, false);
}

/**
 * The failure as an Error that is safe to read: an ordinary Error (or BusbarError) is kept as is; anything
 * else becomes a {@link NonErrorThrown} describing it. A BusbarError whose `code` says "retrying cannot help"
 * keeps that meaning.
 */
export function toFailure(thrown: unknown): Error {
  if (isSafeError(thrown)) return thrown;
  if (attempt(() => BusbarError.is(thrown, 'BUSBAR_PERMANENT'), false)) {
    return new PermanentError(`A PermanentError that cannot be read was thrown: ${describeThrown(thrown)}`);
  }
  // A thrown string is the message its author meant (`throw 'out of stock'`).
  if (typeof thrown === 'string') return new NonErrorThrown(bounded(thrown), thrown);
  const description = attempt(() => describeThrown(thrown), 'a value that cannot be described');
  return new NonErrorThrown(`A non-Error value was thrown: ${description}`, thrown);
}
