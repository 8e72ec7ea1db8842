import { createInterface } from 'node:readline/promises';
import { deadLetterTopic, type Message } from '@busbar/core';
import { positiveNumber, topicArg } from '../args.js';

/** Slower than one dead letter per 1,000 s would wait longer than Node's longest timer between two. */
const MIN_RATE = 0.001;

import type { Command, Context } from '../command.js';
import { deadLetterJson, errorText, type Selection, selection, summarize } from '../dead-letters.js';
import { EXIT, UsageError } from '../errors.js';
import {
  iso,
  jsonLine,
  keyValues,
  ProgressBar,
  printable,
  renderPayload,
  showProgress,
  table,
  truncate,
} from '../format.js';

const SELECT = ['group', 'limit', 'idle', 'error', 'older-than', 'newer-than', 'id'] as const;

/**
 * A listing (and a count before a purge or a re-drive) reads at most this many: `bus.peekDeadLetters` holds each
 * dead letter it has seen until it ends, and sees 10,000 at most (RabbitMQ hands a walk no more unacked ones).
 * Reaching it means there may be more: the output says so instead of a count that is silently too low.
 */
export const LIST_LIMIT = 10_000;

function target(context: Context, command: string): { topic: string; group: string | undefined; dlq: string } {
  const topic = topicArg(context.args, command);
  const group = context.values.group;
  return { topic, group, dlq: deadLetterTopic(topic, group) };
}

/** Dead letters for a listing or a count: up to `--limit`, never over LIST_LIMIT; `more`: LIST_LIMIT stopped it. */
async function readCapped(
  context: Context,
  topic: string,
  group: string | undefined,
  select: Selection,
): Promise<{ messages: Message<unknown>[]; more: boolean }> {
  const limit = Math.min(select.limit ?? LIST_LIMIT, LIST_LIMIT);
  const messages = await context.bus.peekDeadLetters(topic, group, { ...select, limit });
  return { messages, more: messages.length >= LIST_LIMIT };
}

/** `12`, or `10000+` when LIST_LIMIT stopped the read. */
const counted = (n: number, more: boolean): string => (more ? `${n}+` : String(n));

function rows(messages: readonly Message<unknown>[]): string[] {
  return table(
    ['ID', 'DEAD SINCE', 'ATTEMPTS', 'ERROR'],
    messages.map((m) => [
      truncate(m.id, 40),
      iso(m.deadLetter?.lastFailureAt),
      String(m.deadLetter?.attempts ?? '-'),
      truncate(errorText(m.deadLetter), 80),
    ]),
  );
}

export const dlqList: Command = {
  words: ['dlq', 'list'],
  check: (values) => void selection(values),
  synopsis: 'dlq list <topic> [--group g] [filters]',
  summary: 'count, oldest and newest dead letter, errors grouped by text, and the dead letters',
  flags: SELECT,
  async run(context) {
    const { topic, group, dlq } = target(context, 'dlq list');
    const { messages, more } = await readCapped(
      context,
      topic,
      group,
      selection(context.values, Date.now(), context.signal),
    );
    const summary = summarize(messages);
    if (context.values.json) {
      context.io.out(
        jsonLine({
          topic,
          group: group ?? null,
          deadLetterTopic: dlq,
          count: summary.count,
          more,
          oldest: summary.oldest?.toISOString() ?? null,
          newest: summary.newest?.toISOString() ?? null,
          errors: summary.errors,
          messages: messages.map((m) => deadLetterJson(m, false)),
        }),
      );
      return EXIT.ok;
    }
    const lines = keyValues([
      ['topic', topic],
      ['group', group ?? '(none: broadcast)'],
      ['dead-letter topic', dlq],
      [
        'count',
        more
          ? `${counted(summary.count, more)} (a listing stops at ${LIST_LIMIT}: narrow it with filters)`
          : String(summary.count),
      ],
      ['oldest', iso(summary.oldest)],
      ['newest', iso(summary.newest)],
    ]);
    if (summary.count > 0) {
      lines.push(
        '',
        ...table(
          ['COUNT', 'ERROR'],
          summary.errors.map((e) => [String(e.count), truncate(e.error, 100)]),
        ),
      );
      lines.push('', ...rows(messages));
    }
    for (const line of lines) context.io.out(line);
    return EXIT.ok;
  },
};

export const dlqShow: Command = {
  words: ['dlq', 'show'],
  check: (values) => void selection(values),
  synopsis: 'dlq show <topic> [--group g] [--id id] [filters]',
  summary: 'one dead letter (the first that matches): payload, headers, dead-letter metadata',
  flags: SELECT,
  async run(context) {
    const { topic, group } = target(context, 'dlq show');
    const select = selection(context.values, Date.now(), context.signal);
    const [message] = await context.bus.peekDeadLetters(topic, group, { ...select, limit: 1 });
    if (message === undefined) {
      context.io.err(`busbar: no dead letter of '${topic}'${group ? ` (group ${group})` : ''} matches`);
      return EXIT.failed;
    }
    if (context.values.json) {
      context.io.out(jsonLine(deadLetterJson(message, true)));
      return EXIT.ok;
    }
    const info = message.deadLetter;
    const lines = keyValues([
      ['id', message.id],
      ['topic', message.topic],
      ['key', message.key ?? '-'],
      ['published', iso(message.timestamp)],
      ['content type', message.contentType ?? '-'],
      ['error', truncate(errorText(info), 1_000)],
      ['attempts', String(info?.attempts ?? '-')],
      ['original topic', info?.topic ?? '-'],
      ['group', info?.group || '-'],
      ['first failure', iso(info?.firstFailureAt)],
      ['last failure', iso(info?.lastFailureAt)],
    ]);
    lines.push('', 'headers:');
    const headers = Object.entries(message.headers);
    if (headers.length === 0) lines.push('  (none)');
    for (const [name, value] of headers) lines.push(`  ${truncate(name, 200)}: ${truncate(value, 1_000)}`);
    lines.push('', 'payload:', renderPayload(message.payload));
    if (info?.errorStack) lines.push('', 'stack:', printable(info.errorStack.slice(0, 2_000)));
    for (const line of lines) context.io.out(line);
    return EXIT.ok;
  },
};

export const dlqRedrive: Command = {
  words: ['dlq', 'redrive'],
  synopsis: 'dlq redrive <topic> [--group g] [filters] [--rate n] [--dry-run]',
  summary: 'moves dead letters back to their topic; each leaves the DLQ only after its re-publish is confirmed',
  flags: [...SELECT, 'rate', 'dry-run'],
  check: (values) => {
    positiveNumber(values.rate, 'rate', MIN_RATE);
    selection(values);
  },
  async run(context) {
    const { topic, group, dlq } = target(context, 'dlq redrive');
    const select = selection(context.values, Date.now(), context.signal);
    const json = context.values.json;
    if (context.values['dry-run']) {
      const { messages, more } = await readCapped(context, topic, group, select);
      if (json) {
        context.io.out(
          jsonLine({
            dryRun: true,
            topic,
            group: group ?? null,
            deadLetterTopic: dlq,
            count: messages.length,
            more,
            messages: messages.map((m) => deadLetterJson(m, false)),
          }),
        );
      } else {
        context.io.out(
          `Would re-drive ${counted(messages.length, more)} dead letter(s) from ${dlq} to ${topic} (dry run: nothing moved)`,
        );
        if (messages.length > 0) for (const line of ['', ...rows(messages)]) context.io.out(line);
      }
      return EXIT.ok;
    }
    const ratePerSecond = positiveNumber(context.values.rate, 'rate', MIN_RATE);
    const progress = showProgress(json);
    // The bar needs a total: count first (a peek moves nothing), only when someone watches the bar.
    const counting = progress ? await readCapped(context, topic, group, select) : undefined;
    const total = counting && !counting.more ? counting.messages.length : undefined;
    const bar = new ProgressBar('re-driving', total, progress);
    bar.update(0);
    let moved = 0;
    try {
      moved = await context.bus.redrive(topic, group, {
        ...select,
        ...(ratePerSecond === undefined ? {} : { ratePerSecond }),
        onProgress: (n) => {
          moved = n;
          bar.update(n);
        },
      });
    } finally {
      bar.finish();
    }
    // Interrupted: what moved is reported, the rest stays dead (a script must not take this for a full run).
    const interrupted = context.signal.aborted;
    if (json) context.io.out(jsonLine({ topic, group: group ?? null, deadLetterTopic: dlq, moved, interrupted }));
    else
      context.io.out(`Re-drove ${moved} dead letter(s) from ${dlq} to ${topic}${interrupted ? ' (interrupted)' : ''}`);
    return interrupted ? EXIT.interrupted : EXIT.ok;
  },
};

async function confirm(question: string): Promise<boolean> {
  const rl = createInterface({ input: process.stdin, output: process.stderr });
  try {
    const answer = await rl.question(question);
    return /^y(es)?$/i.test(answer.trim());
  } finally {
    rl.close();
  }
}

export const dlqPurge: Command = {
  words: ['dlq', 'purge'],
  synopsis: 'dlq purge <topic> [--group g] [filters] [--yes]',
  summary: 'deletes dead letters; asks first on a terminal, needs --yes otherwise',
  flags: [...SELECT, 'yes'],
  check(values) {
    selection(values);
    if (!values.yes && !process.stdin.isTTY) {
      throw new UsageError('dlq purge deletes messages: pass --yes to confirm when not on a terminal');
    }
  },
  async run(context) {
    const { topic, group, dlq } = target(context, 'dlq purge');
    let select = selection(context.values, Date.now(), context.signal);
    if (!context.values.yes) {
      const { messages, more } = await readCapped(context, topic, group, select);
      const count = messages.length;
      if (count === 0) {
        context.io.out(`No dead letters in ${dlq} match: nothing to delete`);
        return EXIT.ok;
      }
      const question = more
        ? `Delete the first ${count} dead letters (there are more: run purge again for them)? [y/N] `
        : `Delete ${count} dead letters? [y/N] `;
      if (!(await confirm(question))) {
        context.io.err('busbar: purge cancelled, nothing deleted');
        return EXIT.failed;
      }
      // Never delete more than the operator agreed to, even if more died meanwhile.
      select = { ...select, limit: Math.min(count, select.limit ?? count) };
    }
    const purged = await context.bus.purgeDeadLetters(topic, group, select);
    if (context.values.json) context.io.out(jsonLine({ topic, group: group ?? null, deadLetterTopic: dlq, purged }));
    else context.io.out(`Deleted ${purged} dead letter(s) from ${dlq}`);
    return context.signal.aborted ? EXIT.interrupted : EXIT.ok;
  },
};
