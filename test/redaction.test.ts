import { inspect } from 'node:util';
import { type Bus, BusbarError, connect, type Logger } from '@busbar/core';
import { brokerAvailable } from '@busbar/testing';
import { describe, expect, it } from 'vitest';

/**
 * Passwords with the characters a URL reserves (users must %-encode them) must never show up anywhere: error
 * messages, stacks, `cause` chains, `util.inspect`, `JSON.stringify`, log lines, on every scheme, whether the
 * broker is unreachable, refuses the password, or takes it. Every password here contains the token below, so
 * any form of it (raw, encoded, partly decoded) is caught.
 */
const TOKEN = 'zq9canary';
const SHAPES = ['pa/ss', 'p@ss', 'p#ss', 'p%ss', 'p:ss', 'p?ss', 'p ss', 'x/@#%:?&='];

interface Target {
  readonly scheme: string;
  readonly live: string;
  readonly broker: 'rabbitmq' | 'kafka' | 'nats' | 'redis' | 'mqtt';
}

const TARGETS: Target[] = [
  { scheme: 'amqp', live: '127.0.0.1:5672', broker: 'rabbitmq' },
  { scheme: 'kafka', live: '127.0.0.1:9092', broker: 'kafka' },
  { scheme: 'nats', live: '127.0.0.1:4222', broker: 'nats' },
  { scheme: 'redis', live: '127.0.0.1:6379', broker: 'redis' },
  { scheme: 'mqtt', live: '127.0.0.1:1883', broker: 'mqtt' },
];

function capture(): { logger: Logger; lines: string[] } {
  const lines: string[] = [];
  const log = (m: string, f?: unknown) => void lines.push(m, inspect(f, { depth: 10 }));
  return { logger: { debug: log, info: log, warn: log, error: log }, lines };
}

function everything(error: unknown, lines: readonly string[]): string {
  const parts = [String(error), inspect(error, { depth: 10, showHidden: true }), ...lines];
  try {
    parts.push(JSON.stringify(error));
  } catch {
    // a circular cause is fine; inspect above has it
  }
  let cause = (error as { cause?: unknown } | undefined)?.cause;
  for (let i = 0; cause !== undefined && i < 6; i++) {
    parts.push(String(cause), inspect(cause, { depth: 10 }), (cause as Error).stack ?? '');
    cause = (cause as { cause?: unknown }).cause;
  }
  return parts.join('\n');
}

async function attempt(url: string): Promise<string> {
  const { logger, lines } = capture();
  let bus: Bus | undefined;
  let error: unknown;
  try {
    bus = await connect({ url, logger, connectTimeoutMs: 2_000, closeTimeoutMs: 1_000 });
  } catch (e) {
    error = e;
  }
  if (error !== undefined) {
    expect(BusbarError.is(error), `${inspect(error)}`).toBe(true);
    expect(['BUSBAR_CONFIG', 'BUSBAR_CONNECTION', 'BUSBAR_TIMEOUT']).toContain((error as BusbarError).code);
  }
  const seen = [everything(error, lines)];
  if (bus) {
    seen.push(inspect(bus, { depth: 10 }), JSON.stringify(bus), JSON.stringify(bus.health()));
    await bus.close().catch((e: unknown) => seen.push(everything(e, [])));
    seen.push(...lines);
  }
  return seen.join('\n');
}

describe('credentials never leak, whatever characters the password has', () => {
  for (const target of TARGETS) {
    it(`${target.scheme}: unreachable, refused or accepted`, async () => {
      expect(await brokerAvailable(target.broker)).toBe(true);
      const urls: string[] = [];
      for (const shape of SHAPES) {
        const password = encodeURIComponent(`${TOKEN}${shape}`);
        urls.push(`${target.scheme}://busbar:${password}@127.0.0.1:1`);
        urls.push(`${target.scheme}://busbar:${password}@${target.live}`);
        // The same password not encoded, as users first write it.
        urls.push(`${target.scheme}://busbar:${TOKEN}${shape}@127.0.0.1:1`);
      }
      const outputs = await Promise.all(urls.map((url) => attempt(url)));
      for (const [i, output] of outputs.entries()) {
        expect(output, `${urls[i]?.replace(TOKEN, '<token>')}`).not.toContain(TOKEN);
      }
    }, 60_000);
  }

  it('memory and unknown schemes', async () => {
    for (const shape of SHAPES) {
      const encoded = encodeURIComponent(`${TOKEN}${shape}`);
      for (const url of [
        `memory://u:${encoded}@x`,
        `nope://u:${encoded}@x`,
        `amqp://u:${TOKEN}${shape}`,
        `amqp://u:${encoded}@[bad`,
      ]) {
        expect(await attempt(url)).not.toContain(TOKEN);
      }
    }
  });
});
