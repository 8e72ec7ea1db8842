import { type Bus, type ConnectOptions, connect, consoleLogger, silentLogger } from '@busbar/core';
import { MAX_MS, pairs, positiveInt, type Values } from './args.js';
import { UsageError } from './errors.js';

/**
 * Drivers by scheme, imported by the CLI itself rather than by core's loader: the CLI depends on every driver,
 * so this works however npm laid out node_modules (core's own `import()` resolves from core's folder).
 */
const DRIVERS: Record<string, () => Promise<{ driver: unknown }>> = {
  amqp: () => import('@busbar/rabbitmq'),
  amqps: () => import('@busbar/rabbitmq'),
  kafka: () => import('@busbar/kafka'),
  nats: () => import('@busbar/nats'),
  redis: () => import('@busbar/redis'),
  rediss: () => import('@busbar/redis'),
  mqtt: () => import('@busbar/mqtt'),
  mqtts: () => import('@busbar/mqtt'),
  ws: () => import('@busbar/mqtt'),
  wss: () => import('@busbar/mqtt'),
};

export function resolveUrl(values: Values, env: NodeJS.ProcessEnv = process.env): string {
  const url = values.url ?? env.BUSBAR_URL;
  if (url === undefined || url === '') {
    throw new UsageError('No broker URL: pass --url or set BUSBAR_URL (e.g. redis://127.0.0.1:6379)');
  }
  return url;
}

/** `-o key=value`: JSON values where they parse (`-o partitions=6`, `-o streams={"S":["a.#"]}`), else strings. */
export function driverOptions(values: Values): Record<string, unknown> {
  const options: Record<string, unknown> = {};
  for (const [key, text] of pairs(values.option, 'option')) {
    if (key === 'url' || key === 'driver' || key === 'logger') throw new UsageError(`-o ${key} cannot be set this way`);
    try {
      options[key] = JSON.parse(text);
    } catch {
      options[key] = text;
    }
  }
  return options;
}

export async function open(url: string, values: Values): Promise<Bus> {
  const scheme = /^([a-z][a-z0-9+.-]*):/i.exec(url)?.[1]?.toLowerCase();
  const load = scheme === undefined ? undefined : DRIVERS[scheme];
  const driver = load ? ((await load()).driver as ConnectOptions['driver']) : undefined;
  const timeout = positiveInt(values['connect-timeout'], 'connect-timeout', MAX_MS);
  return connect({
    ...driverOptions(values),
    url,
    ...(driver ? { driver } : {}),
    ...(values.name === undefined ? {} : { name: values.name }),
    ...(timeout === undefined ? {} : { connectTimeoutMs: timeout }),
    // Warnings (reconnects, a failed re-drive of one message) go to stderr; --quiet silences them.
    logger: values.quiet ? silentLogger : consoleLogger,
  });
}
