import { inspect } from 'node:util';
import { BusbarError, ConfigError, connect, redactUrl, silentLogger } from '@busbar/core';
import { describe, expect, it } from 'vitest';
import { loadDriver, parseUrl } from '../src/connect.js';

const CANARY = 'busbar-canary-secret';

async function failure(input: Parameters<typeof connect>[0]): Promise<BusbarError> {
  const error = await connect(input).then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(BusbarError.is(error)).toBe(true);
  return error as BusbarError;
}

describe('connect', () => {
  it('connects to the embedded memory transport', async () => {
    const bus = await connect('memory://');
    expect(bus.transport).toBe('memory');
    expect(bus.capabilities.durableGroups).toBe(true);
    expect(bus.health().status).toBe('up');
    await bus.close();
  });

  it('names the package to install for a scheme whose driver is missing', async () => {
    const error = await loadDriver('fake', { fake: '@busbar/not-installed' }).catch((e: unknown) => e);
    expect(BusbarError.is(error, 'BUSBAR_DRIVER_MISSING')).toBe(true);
    expect((error as Error).message).toBe(
      "The 'fake' scheme needs the @busbar/not-installed package: run `npm install @busbar/not-installed`. " +
        'In a bundle (esbuild, webpack, a serverless function) that cannot load it by name, pass it explicitly: ' +
        "`import { driver } from '@busbar/not-installed'` and `connect({ url, driver })`",
    );
    const unknown = await failure('gopher://x');
    expect(unknown.code).toBe('BUSBAR_CONFIG');
    expect(unknown.message).toContain("Unknown URL scheme 'gopher:'");
  });

  it('rejects unknown options and wrong types naming each field', async () => {
    const error = await failure({ url: 'memory://', closeTimeoutMs: 'soon', bogus: 1 } as never);
    expect(error).toBeInstanceOf(ConfigError);
    expect(error.code).toBe('BUSBAR_CONFIG');
    expect(error.retryable).toBe(false);
    expect(error.message).toContain('closeTimeoutMs');
    expect(error.message).toContain("unknown option 'bogus'");
  });

  it('rejects a missing or unparsable URL', async () => {
    expect((await failure({} as never)).message).toContain('url');
    expect((await failure('not a url')).code).toBe('BUSBAR_CONFIG');
  });

  it('rejects query parameters (no driver reads them) naming them, never showing their values', async () => {
    const error = await failure(`memory://q?heartbeat=30&token=${CANARY}`);
    expect(error.code).toBe('BUSBAR_CONFIG');
    expect(error.retryable).toBe(false);
    expect(error.message).toContain('heartbeat, token');
    expect(`${error.message}\n${error.stack}\n${inspect(error)}`).not.toContain(CANARY);
  });

  it('rejects a path with a malformed %-escape as configuration, not as a connection failure', async () => {
    const error = await failure('memory://q/vhost%zz');
    expect(error.code).toBe('BUSBAR_CONFIG');
    expect(error.message).toContain('%-escape');
  });

  it('never shows a password from an unparsable URL', async () => {
    const error = await failure(`amqp://user:${CANARY}@[bad`);
    expect(`${error.message}\n${error.stack}\n${inspect(error)}`).not.toContain(CANARY);
  });

  it('says how to write a password with / ? or # in it, and shows none of it', async () => {
    for (const password of [`se/${CANARY}`, `se?${CANARY}`, `se#${CANARY}`, `a/b@c#${CANARY}`]) {
      const error = await failure(`amqp://user:${password}@127.0.0.1:5672/vhost`);
      expect(error.code).toBe('BUSBAR_CONFIG');
      expect(error.message).toContain('percent-encoded');
      expect(`${error.message}\n${error.stack}\n${inspect(error)}`).not.toContain(CANARY);
    }
    // Encoded, the same password is a valid URL (memory:// ignores credentials and connects).
    const bus = await connect(`memory://user:${encodeURIComponent(`a/b@c#${CANARY}`)}@q/x`);
    await bus.close();
  });

  it('redacts passwords in URLs', () => {
    expect(redactUrl(`amqp://user:${CANARY}@host:5672/vhost`)).toBe('amqp://user:***@host:5672/vhost');
    expect(redactUrl('redis://host:6379')).toBe('redis://host:6379');
    expect(redactUrl(`not-a-url://u:${CANARY}@h`)).not.toContain(CANARY);
  });

  it('shows no secret when the bus is inspected or serialized', async () => {
    const bus = await connect({ url: `memory://user:${CANARY}@demo`, logger: silentLogger });
    expect(inspect(bus, { depth: 10 })).not.toContain(CANARY);
    expect(JSON.stringify(bus)).not.toContain(CANARY);
    expect(inspect(bus)).toContain('***');
    await bus.close();
  });
});

describe('parseUrl', () => {
  it('splits seed lists that WHATWG URLs reject', () => {
    const { url, hosts } = parseUrl(`kafka://user:${CANARY}@h1:9092,h2:9093,h3/path?x=1`);
    expect(hosts).toEqual(['h1:9092', 'h2:9093', 'h3']);
    expect(url.hostname).toBe('h1');
    expect(url.password).toBe(CANARY);
    expect(url.pathname).toBe('/path');
    expect(parseUrl('nats://127.0.0.1:4222').hosts).toEqual(['127.0.0.1:4222']);
    expect(() => parseUrl(`kafka://u:${CANARY}@[bad,h2`)).toThrow(expect.objectContaining({ code: 'BUSBAR_CONFIG' }));
  });
});

describe('subscribe options', () => {
  it.each([
    [{ concurrency: 0 }, 'concurrency'],
    [{ concurrency: 4, prefetch: 2 }, 'prefetch must be >= concurrency'],
    [{ retry: { maxAttempts: 0 } }, 'retry.maxAttempts'],
    [{ retry: { initialDelayMs: 500, maxDelayMs: 100 } }, 'maxDelayMs must be >= initialDelayMs'],
    [{ retry: { jitter: 2 } }, 'retry.jitter'],
    [{ idempotency: { store: {} } }, 'idempotency.store'],
    [{ idempotency: { store: { claim() {}, complete() {}, release() {} } } }, 'need a group'],
    [{ deadLetter: 'yes' }, 'deadLetter'],
    [{ grup: 'typo' }, "unknown option 'grup'"],
  ])('rejects %j', async (options, why) => {
    const bus = await connect('memory://');
    const error = await bus
      .subscribe('a.b', async () => {}, options as never)
      .then(
        () => undefined,
        (e: unknown) => e,
      );
    expect(BusbarError.is(error, 'BUSBAR_CONFIG')).toBe(true);
    expect((error as Error).message).toContain(why);
    await bus.close();
  });

  it('rejects wildcard subscriptions with dead-letter topics that are not valid names', async () => {
    const bus = await connect('memory://');
    await expect(
      bus.subscribe('a.b', async () => {}, { group: 'g', deadLetter: { topic: 'bad topic' } }),
    ).rejects.toThrow('segments may only hold');
    await bus.close();
  });
});

describe('secret options at dotted paths', () => {
  it('a nested secret option (tls.key) is redacted from what the bus logs', async () => {
    const { defineDriver } = await import('@busbar/core/transport');
    const { memoryDriver } = await import('../src/memory/driver.js');
    const { z } = await import('zod');
    const KEY = 'PRIVATE-KEY-TEXT-must-not-show';
    const logged: string[] = [];
    const logger = {
      debug: (m: string, f?: unknown) => void logged.push(m, JSON.stringify(f ?? null)),
      info: (m: string, f?: unknown) => void logged.push(m, JSON.stringify(f ?? null)),
      warn: (m: string, f?: unknown) => void logged.push(m, JSON.stringify(f ?? null)),
      error: (m: string, f?: unknown) => void logged.push(m, JSON.stringify(f ?? null)),
    };
    const driver = defineDriver({
      name: 'memory',
      schemes: ['memory'],
      options: z.object({ tls: z.object({ key: z.string() }).optional() }),
      secretOptions: ['tls.key', 'tls.missing', 'nothing.here'],
      create: (context) => {
        context.logger.warn(`the key is ${KEY}`, { key: KEY });
        return memoryDriver.create({ ...context, options: {} } as never);
      },
    });
    const bus = await connect({ url: 'memory://nested-secret', driver, logger, tls: { key: KEY } });
    await bus.close();
    expect(logged.join('\n')).toContain('the key is');
    expect(logged.join('\n')).not.toContain(KEY);
  });
});
