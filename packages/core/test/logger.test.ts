import { Writable } from 'node:stream';
import { connect } from '@busbar/core';
import { pino } from 'pino';
import { describe, expect, it } from 'vitest';

function pinoInto(lines: Record<string, unknown>[]) {
  const stream = new Writable({
    write(chunk, _encoding, done) {
      for (const line of String(chunk).split('\n')) if (line.trim()) lines.push(JSON.parse(line));
      done();
    },
  });
  return pino({ level: 'debug' }, stream);
}

describe('loggers', () => {
  it('a pino logger gets (fields, message): fields stay structured, secrets stay out', async () => {
    const lines: Record<string, unknown>[] = [];
    const logger = pinoInto(lines).child({ service: 'orders' });
    const secret = 'pino-canary-secret';
    const bus = await connect({ url: `memory://u:${secret}@pino`, logger });
    await bus.subscribe(
      'log.t',
      () => {
        throw new Error(`failed with ${secret}`);
      },
      { group: 'g', retry: false, deadLetter: false },
    );
    await bus.publish('log.t', 1);
    await new Promise((r) => setTimeout(r, 100));
    await bus.close();
    const dropped = lines.find((l) => String(l.msg).includes('Dropping message'));
    expect(dropped, JSON.stringify(lines)).toBeDefined();
    expect(dropped?.service).toBe('orders');
    expect(dropped?.group).toBe('g');
    expect(dropped?.error).toEqual({ type: 'Error', message: 'failed with ***' });
    expect(JSON.stringify(lines)).not.toContain(secret);
  });

  it('a console-style logger gets (message, fields)', async () => {
    const calls: unknown[][] = [];
    const record =
      () =>
      (...args: unknown[]) =>
        void calls.push(args);
    const logger = { debug: record(), info: record(), warn: record(), error: record() };
    const bus = await connect({ url: 'memory://console-style', logger });
    await bus.subscribe(
      'log.c',
      () => {
        throw new Error('no');
      },
      { group: 'g', retry: false, deadLetter: false },
    );
    await bus.publish('log.c', 1);
    await new Promise((r) => setTimeout(r, 100));
    await bus.close();
    const dropped = calls.find((c) => String(c[0]).includes('Dropping message'));
    expect(typeof dropped?.[0]).toBe('string');
    expect(dropped?.[1]).toMatchObject({ group: 'g', error: 'Error: no' });
  });

  it('a logger that throws loses its lines, not messages: no unhandled rejection, later messages still flow', async () => {
    const rejections: unknown[] = [];
    const warnings: Error[] = [];
    const onRejection = (reason: unknown) => void rejections.push(reason);
    const onWarning = (warning: Error) => void warnings.push(warning);
    process.on('unhandledRejection', onRejection);
    process.on('warning', onWarning);
    try {
      const boom = () => {
        throw new Error('log transport down, secret=hunter2');
      };
      const bus = await connect({
        url: 'memory://throwing-logger',
        logger: { debug: boom, info: boom, warn: boom, error: boom },
      });
      const seen: number[] = [];
      await bus.subscribe<number>(
        'log.throw',
        (m) => {
          seen.push(m.payload);
          if (m.payload === 1) throw new Error('no');
        },
        { group: 'g', retry: false, deadLetter: false },
      );
      await bus.publish('log.throw', 1);
      await bus.publish('log.throw', 2);
      await new Promise((r) => setTimeout(r, 100));
      expect(seen).toEqual([1, 2]);
      await bus.close();
      expect(rejections).toEqual([]);
      const reported = warnings.filter((w) => (w as { code?: string }).code === 'BUSBAR_LOGGER_FAILED');
      expect(reported).toHaveLength(1);
      expect(reported[0]?.message).not.toContain('hunter2');
    } finally {
      process.off('unhandledRejection', onRejection);
      process.off('warning', onWarning);
    }
  });
});
