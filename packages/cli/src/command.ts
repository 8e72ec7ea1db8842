import type { Bus } from '@busbar/core';
import type { Flag, Values } from './args.js';
import type { Output } from './format.js';

export interface Context {
  readonly bus: Bus;
  readonly url: string;
  readonly values: Values;
  /** Positionals after the command words (`dlq list orders` -> `['orders']`). */
  readonly args: readonly string[];
  readonly io: Output;
  /** Aborted on the first SIGINT/SIGTERM: long commands stop, and the bus closes cleanly. */
  readonly signal: AbortSignal;
}

export interface Command {
  /** The command words: `['dlq', 'list']`, `['health']`. */
  readonly words: readonly string[];
  readonly synopsis: string;
  readonly summary: string;
  readonly flags: readonly Flag[];
  /** Checks the arguments before connecting, so a usage error never waits on a broker. */
  readonly check?: (values: Values, args: readonly string[]) => void;
  readonly run: (context: Context) => Promise<number>;
}
