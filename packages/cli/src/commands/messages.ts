import { randomUUID } from 'node:crypto';
import { readFile, stat } from 'node:fs/promises';
import type { Message, Subscription } from '@busbar/core';
import { MAX_MS, pairs, positiveInt, topicArg } from '../args.js';
import type { Command } from '../command.js';
import { EXIT, UsageError } from '../errors.js';
import { iso, jsonLine, jsonPayload, renderPayload, truncate } from '../format.js';

/** The largest payload read from a file or stdin: far above any broker's limit, so core's check decides. */
const MAX_INPUT_BYTES = 64 * 1024 * 1024;

async function readStdin(): Promise<string> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of process.stdin) {
    const buffer = Buffer.isBuffer(chunk) ? chunk : Buffer.from(String(chunk));
    size += buffer.byteLength;
    if (size > MAX_INPUT_BYTES) throw new UsageError(`stdin holds more than ${MAX_INPUT_BYTES} bytes`);
    chunks.push(buffer);
  }
  return Buffer.concat(chunks).toString('utf8');
}

/** `json` as written, `@file` read from a file, `-` (or nothing) from stdin. Always JSON. */
async function payloadText(arg: string | undefined): Promise<{ text: string; source: string }> {
  if (arg === undefined || arg === '-') return { text: await readStdin(), source: 'stdin' };
  if (arg.startsWith('@')) {
    const path = arg.slice(1);
    let text: string;
    try {
      if ((await stat(path)).size > MAX_INPUT_BYTES)
        throw new UsageError(`${path} holds more than ${MAX_INPUT_BYTES} bytes`);
      text = await readFile(path, 'utf8');
    } catch (error) {
      if (error instanceof UsageError) throw error;
      const code = (error as { code?: unknown }).code;
      throw new UsageError(`Cannot read ${path}${typeof code === 'string' ? ` (${code})` : ''}`);
    }
    // Editors on Windows start UTF-8 files with a byte-order mark, which JSON.parse refuses.
    return { text: text.replace(/^\uFEFF/, ''), source: path };
  }
  return { text: arg, source: 'the argument' };
}

export const publish: Command = {
  words: ['publish'],
  synopsis: 'publish <topic> [json|@file|-] [--key k] [--header name=value] [--id id]',
  summary: 'publishes one JSON message and prints its id once the broker confirmed it',
  flags: ['key', 'header', 'id'],
  check(values, args) {
    topicArg(args, 'publish');
    if (args.length > 2) throw new UsageError('publish takes one payload (quote the JSON)');
    pairs(values.header, 'header');
    if ((values.id?.length ?? 0) > 1) throw new UsageError('publish takes one --id');
    // A payload written on the command line is checked before connecting (a file or stdin is read then).
    const inline = args[1];
    if (inline !== undefined && inline !== '-' && !inline.startsWith('@')) {
      try {
        JSON.parse(inline);
      } catch {
        throw new UsageError(`The payload from the argument is not JSON (quote strings: '"text"')`);
      }
    }
  },
  async run(context) {
    const topic = topicArg(context.args, 'publish');
    const { text, source } = await payloadText(context.args[1]);
    let payload: unknown;
    try {
      payload = JSON.parse(text);
    } catch {
      throw new UsageError(`The payload from ${source} is not JSON (quote strings: '"text"')`);
    }
    const headers = Object.fromEntries(pairs(context.values.header, 'header'));
    const id = await context.bus.publish(topic, payload, {
      headers,
      ...(context.values.key === undefined ? {} : { key: context.values.key }),
      ...(context.values.id?.[0] === undefined ? {} : { id: context.values.id[0] }),
    });
    context.io.out(context.values.json ? jsonLine({ topic, id }) : id);
    return EXIT.ok;
  },
};

function pretty(message: Message<unknown>): string[] {
  const lines = [
    `--- ${iso(message.timestamp)}  ${truncate(message.topic, 200)}  id=${truncate(message.id, 100)}${
      message.key === undefined ? '' : `  key=${truncate(message.key, 100)}`
    }`,
  ];
  for (const [name, value] of Object.entries(message.headers))
    lines.push(`${truncate(name, 200)}: ${truncate(value, 500)}`);
  lines.push(renderPayload(message.payload));
  return lines;
}

export const tail: Command = {
  words: ['tail'],
  synopsis: 'tail <topic> [--group g] [--count n]',
  summary: 'prints messages as they arrive until Ctrl-C (or --count); with --group it consumes them for that group',
  flags: ['group', 'count'],
  check: (values, args) => {
    topicArg(args, 'tail');
    positiveInt(values.count, 'count');
  },
  async run(context) {
    const topic = topicArg(context.args, 'tail');
    const count = positiveInt(context.values.count, 'count');
    const group = context.values.group;
    let seen = 0;
    let stop!: () => void;
    const stopped = new Promise<void>((resolve) => {
      stop = resolve;
    });
    context.signal.addEventListener('abort', () => stop(), { once: true });
    const subscription = await context.bus.subscribe(
      topic,
      (message) => {
        // Past the count: not printed, so not taken either. Left unsettled, it is released (unacked, for the
        // group's next reader) when the bus closes below; returning would ack it, and a group would lose it.
        if (count !== undefined && seen >= count) return new Promise<void>(() => undefined);
        seen++;
        if (context.values.json) {
          context.io.out(
            jsonLine({
              id: message.id,
              topic: message.topic,
              key: message.key ?? null,
              timestamp: iso(message.timestamp),
              headers: message.headers,
              payload: jsonPayload(message.payload),
            }),
          );
        } else {
          for (const line of pretty(message)) context.io.out(line);
        }
        if (count !== undefined && seen >= count) stop();
      },
      // A tail must never dead-letter or retry what it only prints.
      { ...(group === undefined ? {} : { group }), retry: false, deadLetter: false, concurrency: 1 },
    );
    context.io.err(`busbar: tailing ${topic}${group ? ` as group ${group}` : ''} (Ctrl-C to stop)`);
    await stopped;
    // The count reached: messages handed over since are released now, not after the close timeout.
    if (count !== undefined && seen >= count) await context.bus.close({ signal: AbortSignal.abort() });
    else await subscription.close();
    return EXIT.ok;
  },
};

export const HEALTH_TOPIC = 'busbar.health';

export const health: Command = {
  words: ['health'],
  synopsis: 'health [--timeout ms] [--topic busbar.health]',
  summary: 'connects, publishes a probe and receives it back; exit 0 when all of it worked, 1 otherwise',
  flags: ['timeout', 'topic'],
  check: (values) => void positiveInt(values.timeout, 'timeout', MAX_MS),
  async run(context) {
    const timeoutMs = positiveInt(context.values.timeout, 'timeout', MAX_MS) ?? 10_000;
    const topic = context.values.topic ?? HEALTH_TOPIC;
    const probe = randomUUID();
    const started = Date.now();
    let received!: () => void;
    const arrived = new Promise<void>((resolve) => {
      received = resolve;
    });
    // One deadline for all of it: a broker that accepts the connection but never answers must not hang a probe.
    let timer: NodeJS.Timeout | undefined;
    const timedOut = new Promise<'timeout'>((resolve) => {
      timer = setTimeout(() => resolve('timeout'), timeoutMs);
    });
    let subscription: Subscription | undefined;
    let publishMs: number | undefined;
    let roundTripMs: number | undefined;
    let problem: string | undefined;
    try {
      const subscribed = await Promise.race([
        context.bus.subscribe(
          topic,
          (message) => {
            if ((message.payload as { probe?: unknown } | null)?.probe === probe) received();
          },
          { retry: false, deadLetter: false },
        ),
        timedOut,
      ]);
      if (subscribed === 'timeout') problem = `subscribing did not complete within ${timeoutMs} ms`;
      else {
        subscription = subscribed;
        const sent = Date.now();
        const published = await Promise.race([context.bus.publish(topic, { probe }), timedOut]);
        if (published === 'timeout') problem = `the publish was not confirmed within ${timeoutMs} ms`;
        else {
          publishMs = Date.now() - sent;
          const result = await Promise.race([arrived.then(() => 'ok' as const), timedOut]);
          if (result === 'timeout') problem = `the probe did not come back within ${timeoutMs} ms`;
          else roundTripMs = Date.now() - sent;
        }
      }
    } finally {
      clearTimeout(timer);
    }
    const state = context.bus.health();
    if (problem === undefined && state.status !== 'up') problem = `the bus reports ${state.status}`;
    await subscription?.close();
    const report = {
      ok: problem === undefined,
      transport: context.bus.transport,
      status: state.status,
      connections: state.connections.map((c) => ({ name: c.name, state: c.state })),
      publishMs: publishMs ?? null,
      roundTripMs: roundTripMs ?? null,
      totalMs: Date.now() - started,
      ...(problem === undefined ? {} : { problem }),
    };
    if (context.values.json) context.io.out(jsonLine(report));
    else {
      context.io.out(`${report.ok ? 'ok' : 'FAILED'}  ${report.transport}  ${state.status}`);
      context.io.out(`publish confirmed in ${publishMs ?? '-'} ms, round trip ${roundTripMs ?? '-'} ms`);
      for (const c of state.connections) context.io.out(`connection ${c.name}: ${c.state}`);
      if (problem !== undefined) context.io.err(`busbar: health check failed: ${problem}`);
    }
    return report.ok ? EXIT.ok : EXIT.failed;
  },
};
