import { z } from 'zod';
import { Bus } from './bus.js';
import { Connections } from './connections.js';
import { BusbarError, ConfigError, ConnectionError, DriverMissingError } from './errors.js';
import { consoleLogger, redactingLogger } from './logger.js';
import { memoryDriver } from './memory/driver.js';
import { busOptionsShape, parseOptions } from './options.js';
import { redactUrl, safeDecode, sanitizeError } from './redact.js';
import { type Driver, isDriver } from './transport/spi.js';
import { withTimeout } from './transport/util.js';

/** URL scheme -> the package that serves it. */
export const DRIVER_PACKAGES: Readonly<Record<string, string>> = {
  amqp: '@busbar/rabbitmq',
  amqps: '@busbar/rabbitmq',
  kafka: '@busbar/kafka',
  nats: '@busbar/nats',
  redis: '@busbar/redis',
  rediss: '@busbar/redis',
  'redis+sentinel': '@busbar/redis',
  'rediss+sentinel': '@busbar/redis',
  mqtt: '@busbar/mqtt',
  mqtts: '@busbar/mqtt',
  ws: '@busbar/mqtt',
  wss: '@busbar/mqtt',
};

/**
 * `connect()` options: `url` plus bus options (name, logger, timeouts,
 * maxPayloadBytes) plus the options of the URL's driver, all in one flat,
 * strictly validated object. `driver` passes a driver explicitly instead of
 * loading it by scheme.
 */
export interface ConnectOptions {
  url: string;
  name?: string;
  logger?: import('./logger.js').Logger;
  maxPayloadBytes?: number;
  connectTimeoutMs?: number;
  publishTimeoutMs?: number;
  closeTimeoutMs?: number;
  driver?: Driver;
  /** Driver options: see the driver package's README. */
  [option: string]: unknown;
}

/**
 * Parses a broker URL. Several brokers take a seed list (`kafka://h1:9092,h2:9092`,
 * `nats://a:4222,b:4222`), which WHATWG URLs reject: the list is split off and
 * the URL is parsed with its first host.
 */
export function parseUrl(text: string): { url: URL; hosts: string[] } {
  try {
    const url = new URL(text);
    return { url, hosts: url.host ? [url.host] : [] };
  } catch {
    const match = /^([a-z][a-z0-9+.-]*:\/\/)([^@/?#]*@)?([^/?#]*)(.*)$/i.exec(text);
    if (match?.[3]?.includes(',')) {
      const hosts = match[3].split(',').filter((h) => h.length > 0);
      try {
        return { url: new URL(`${match[1]}${match[2] ?? ''}${hosts[0] ?? ''}${match[4] ?? ''}`), hosts };
      } catch {
        // fall through to the error below
      }
    }
    // A password pasted as is (`amqp://app:pa/ss@host`) is the usual cause: the URL parser stops at its `/`.
    const hint = text.includes('@')
      ? ' (a user name or password with / ? # @ or % in it must be percent-encoded: encodeURIComponent)'
      : '';
    throw new ConfigError(`Invalid connect options: url: '${redactUrl(text)}' is not a valid URL${hint}`);
  }
}

/** The option at a dotted path (`tls.key`), or undefined; never runs a getter of anything but plain data. */
function optionAt(options: Record<string, unknown>, path: string): unknown {
  let current: unknown = options;
  for (const name of path.split('.')) {
    if (typeof current !== 'object' || current === null) return undefined;
    const own = Object.getOwnPropertyDescriptor(current, name);
    current = own !== undefined && 'value' in own ? own.value : undefined;
  }
  return current;
}

/** Loads the driver for a scheme. `packages` is a parameter so tests can name a package that is not installed. */
export async function loadDriver(
  scheme: string,
  packages: Readonly<Record<string, string>> = DRIVER_PACKAGES,
): Promise<Driver> {
  if (scheme === 'memory') return memoryDriver;
  const packageName = packages[scheme];
  if (!packageName) {
    const known = ['memory', ...Object.keys(packages)].join(', ');
    throw new ConfigError(`Unknown URL scheme '${scheme}:': busbar knows ${known}`);
  }
  let mod: { driver?: unknown };
  try {
    mod = (await import(packageName)) as { driver?: unknown };
  } catch (error) {
    const code = (error as { code?: string }).code;
    if (
      (code === 'ERR_MODULE_NOT_FOUND' || code === 'MODULE_NOT_FOUND') &&
      String((error as Error).message).includes(packageName)
    ) {
      throw new DriverMissingError(packageName, scheme);
    }
    throw new ConfigError(`Loading ${packageName} failed: ${(error as Error).message}`, { cause: error });
  }
  if (!isDriver(mod.driver)) throw new ConfigError(`${packageName} does not export a busbar driver named 'driver'`);
  return mod.driver;
}

/**
 * Connects to the broker named by the URL scheme (`amqp://`, `kafka://`,
 * `nats://`, `redis://`, `mqtt://`, `memory://`), loading its driver package.
 * Resolves once connected; rejects with a `ConfigError` for bad options (the
 * message names the field) or a `ConnectionError`. Credentials never appear in
 * errors or logs.
 */
/** How long a transport whose connect failed gets to close before connect() rejects anyway. */
const CONNECT_CLOSE_MS = 1_000;

export async function connect(input: string | ConnectOptions): Promise<Bus> {
  const raw: Record<string, unknown> =
    typeof input === 'string' ? { url: input } : typeof input === 'object' && input !== null ? { ...input } : {};
  if (typeof raw.url !== 'string') throw new ConfigError('Invalid connect options: url: expected a broker URL string');
  const { url, hosts } = parseUrl(raw.url);
  for (const part of [url.username, url.password]) {
    if (safeDecode(part) === part && /%(?![0-9a-f]{2})/i.test(part)) {
      throw new ConfigError(
        'Invalid connect options: url: the user name or password has a malformed %-escape (write a literal % as %25)',
      );
    }
  }
  // The path names a RabbitMQ vhost, a Redis database or a Sentinel master: a malformed escape there used to
  // surface as a retryable connection error ("URI malformed") on every attempt.
  if (safeDecode(url.pathname) === url.pathname && /%(?![0-9a-f]{2})/i.test(url.pathname)) {
    throw new ConfigError('Invalid connect options: url: the path has a malformed %-escape (write a literal % as %25)');
  }
  // No driver reads them: `amqp://host?heartbeat=30` or `redis://host?family=6` would be dropped without a word.
  // Only the names are shown: a value may be a token.
  if (url.search !== '') {
    const names = [...new Set(url.searchParams.keys())].slice(0, 5).join(', ');
    throw new ConfigError(
      `Invalid connect options: url: query parameters are not read (${names}); pass them as connect() options (see the driver's README)`,
    );
  }
  const scheme = url.protocol.slice(0, -1);
  const explicit = raw.driver;
  delete raw.driver;
  if (explicit !== undefined && !isDriver(explicit))
    throw new ConfigError('Invalid connect options: driver: expected a busbar driver');
  const driver = explicit ?? (await loadDriver(scheme));
  if (!driver.schemes.includes(scheme)) {
    throw new ConfigError(
      `The ${driver.name} driver does not serve '${scheme}:' URLs (it serves ${driver.schemes.join(', ')})`,
    );
  }

  const secrets: string[] = [];
  if (url.password) secrets.push(safeDecode(url.password), url.password);
  for (const path of driver.secretOptions ?? []) {
    const value = optionAt(raw, path);
    const text = typeof value === 'string' ? value : Buffer.isBuffer(value) ? value.toString('utf8') : undefined;
    if (text) secrets.push(text);
  }

  const schema = z.strictObject({ ...busOptionsShape, ...driver.options.shape });
  const parsed = parseOptions(schema, raw, 'connect options') as z.output<typeof schema> & Record<string, unknown>;
  const logger = redactingLogger(parsed.logger ?? consoleLogger, secrets);
  const driverOptions: Record<string, unknown> = {};
  for (const name of Object.keys(driver.options.shape)) driverOptions[name] = parsed[name];

  const connections = new Connections(driver.name, logger, secrets);
  const transport = driver.create({
    url,
    hosts,
    options: driverOptions,
    bus: {
      name: parsed.name ?? `busbar-${process.pid}`,
      connectTimeoutMs: parsed.connectTimeoutMs,
      publishTimeoutMs: parsed.publishTimeoutMs,
      closeTimeoutMs: parsed.closeTimeoutMs,
    },
    secrets,
    logger,
    reportState: (connection, state, error) => connections.report(connection, state, error),
    forgetState: (connection) => connections.forget(connection),
  });
  const bus = new Bus({
    transport,
    system: driver.name,
    redactedUrl: redactUrl(url),
    logger,
    maxPayloadBytes: parsed.maxPayloadBytes ?? Number.POSITIVE_INFINITY,
    closeTimeoutMs: parsed.closeTimeoutMs,
    secrets,
    connections,
  });
  try {
    await withTimeout(
      transport.connect(),
      parsed.connectTimeoutMs + 1_000,
      `Connecting to ${redactUrl(url)} timed out after ${parsed.connectTimeoutMs} ms`,
    );
  } catch (error) {
    // Bounded too: on a slow or silent link the close of a half-made connection could take as long again.
    const closing = transport.close(Date.now() + CONNECT_CLOSE_MS).catch(() => undefined);
    await withTimeout(closing, CONNECT_CLOSE_MS, 'close after a failed connect').catch(() => undefined);
    // No bus will be there to close: its connections are over now.
    connections.end();
    if (BusbarError.is(error)) throw error;
    throw new ConnectionError(`Could not connect to ${redactUrl(url)}: ${sanitizeError(error, secrets).message}`, {
      cause: sanitizeError(error, secrets),
    });
  }
  return bus;
}
