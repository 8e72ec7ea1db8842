import { type Bus, BusbarError, redactUrl } from '@busbar/core';
import { onlyFlags, parse } from './args.js';
import type { Command } from './command.js';
import { dlqList, dlqPurge, dlqRedrive, dlqShow } from './commands/dlq.js';
import { health, publish, tail } from './commands/messages.js';
import { topology } from './commands/topology.js';
import { open, resolveUrl } from './connection.js';
import { describeError, EXIT, UsageError, urlSecrets } from './errors.js';
import { type Output, stdio } from './format.js';

export const COMMANDS: readonly Command[] = [dlqList, dlqShow, dlqRedrive, dlqPurge, publish, tail, health, topology];

export function usage(): string {
  return [
    'Usage: busbar <command> [options]',
    '',
    'Commands:',
    ...COMMANDS.flatMap((c) => [`  busbar ${c.synopsis}`, `      ${c.summary}`]),
    '',
    'Connection (every command):',
    '  --url <url>              broker URL (default: $BUSBAR_URL): memory, amqp(s), kafka, nats, redis(s), mqtt(s), ws(s)',
    '  -o, --option key=value   a connect() option of the driver (repeatable; values are JSON when they parse)',
    '  --name <name>            bus name;  --connect-timeout <ms>;  -q, --quiet (no warnings on stderr)',
    '  --json                   machine-readable output on stdout, no progress bar',
    '',
    'Dead-letter filters (dlq commands):',
    '  -g, --group <g>          the subscription group (omit for a broadcast subscription)',
    '  --error <text>           error message or name contains <text>',
    '  --older-than <d>         dead for at least <d> (500ms, 30s, 15m, 2h, 7d); --newer-than <d>: for less',
    '  --id <id>                this message id (repeatable)',
    '  --limit <n>              at most n;  --idle <ms>: stop when none arrived for this long (default 1000)',
    '  --rate <n>               redrive: at most n per second;  --dry-run: show what would move',
    '  -y, --yes                purge: do not ask',
    '',
    'Exit status: 0 ok, 1 the operation failed, 2 usage error.',
  ].join('\n');
}

function find(positionals: readonly string[]): { command: Command; args: string[] } | undefined {
  for (const command of COMMANDS) {
    if (command.words.every((word, i) => positionals[i] === word)) {
      return { command, args: positionals.slice(command.words.length) };
    }
  }
  return undefined;
}

/**
 * Runs one invocation; resolves with the exit status. Never throws: errors become `busbar: <message> (<code>)`
 * on stderr, with the URL's password masked.
 */
export async function main(argv: readonly string[], io: Output = stdio, signal?: AbortSignal): Promise<number> {
  let secrets: string[] = urlSecrets(process.env.BUSBAR_URL);
  let bus: Bus | undefined;
  try {
    const { values, positionals } = parse(argv);
    secrets = [...secrets, ...urlSecrets(values.url)];
    const found = find(positionals);
    if (values.help && found === undefined) {
      io.out(usage());
      return EXIT.ok;
    }
    if (found === undefined) {
      const what = positionals.length === 0 ? 'No command given' : `Unknown command '${positionals.join(' ')}'`;
      throw new UsageError(`${what}: run busbar --help`);
    }
    const { command, args } = found;
    if (values.help) {
      io.out(`Usage: busbar ${command.synopsis}\n\n${command.summary}\n\n${usage()}`);
      return EXIT.ok;
    }
    onlyFlags(values, command.flags, command.words.join(' '));
    command.check?.(values, args);
    const url = resolveUrl(values);
    try {
      bus = await open(url, values);
    } catch (error) {
      // The URL or options are wrong (not the broker): that is a usage error too.
      if (BusbarError.is(error, 'BUSBAR_CONFIG')) throw new UsageError(`${error.message} (url ${redactUrl(url)})`);
      throw error;
    }
    const opened = bus;
    // Interrupted: close the bus (bounded by closeTimeoutMs) so walks end and nothing unconfirmed is acked.
    signal?.addEventListener('abort', () => void opened.close().catch(() => undefined), { once: true });
    return await command.run({ bus, url, values, args, io, signal: signal ?? new AbortController().signal });
  } catch (error) {
    io.err(describeError(error, secrets));
    return error instanceof UsageError ? EXIT.usage : EXIT.failed;
  } finally {
    await bus?.close().catch((error: unknown) => io.err(describeError(error, secrets)));
  }
}
