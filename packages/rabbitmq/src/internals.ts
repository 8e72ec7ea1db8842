/**
 * Everything of @busbar/rabbitmq that relies on amqplib beyond its documented API (its README and
 * index.d.ts): two fields of its connection object and what ack/nack read of a message. Each is pinned by
 * test/internals.test.ts against a real broker, and the version check keeps an untested amqplib from running
 * them.
 */
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { ConfigError } from '@busbar/core';
import type { ChannelModel, Message, Options } from 'amqplib';

/** The amqplib versions these internals are tested with: the same range as the package's dependency. */
export const TESTED_AMQPLIB_RANGE = '>=2.3.1 <3.0.0';

/** Throws a ConfigError naming the tested range when `version` is outside it. */
export function checkAmqplibVersion(version: string): void {
  const match = /^(\d+)\.(\d+)\.(\d+)/.exec(version);
  const [major, minor, patch] = match ? [Number(match[1]), Number(match[2]), Number(match[3])] : [0, 0, 0];
  if (major === 2 && (minor > 3 || (minor === 3 && patch >= 1))) return;
  throw new ConfigError(
    `@busbar/rabbitmq relies on amqplib internals tested with amqplib ${TESTED_AMQPLIB_RANGE}, but amqplib ${version} is installed: install amqplib@^2.3.1`,
  );
}

/**
 * The installed amqplib's version, as the import of 'amqplib' from this package resolves it. Its `exports`
 * map hides `amqplib/package.json`, so the file is read next to the resolved entry point (the package root).
 */
export function installedAmqplibVersion(): string {
  const entry = createRequire(import.meta.url).resolve('amqplib');
  const pkg = JSON.parse(readFileSync(join(dirname(entry), 'package.json'), 'utf8')) as { version?: unknown };
  return typeof pkg.version === 'string' ? pkg.version : 'unknown';
}

checkAmqplibVersion(installedAmqplibVersion());

/**
 * The negotiated frame_max of a connection, 0 when unknown. amqplib keeps it as `connection.frameMax`
 * (lib/connection.js, set from connection.tune-ok) but does not type or document it; the header-table limit
 * depends on it (see codec.ts), and 0 there falls back to amqplib's own 64 KiB bound.
 */
export function frameMax(model: ChannelModel): number {
  const value: unknown = Reflect.get(model.connection, 'frameMax');
  return typeof value === 'number' && Number.isFinite(value) ? value : 0;
}

/**
 * Destroys the socket under an amqplib connection (amqplib offers no forced close: `close()` waits for
 * close-ok, which a silent broker never sends). amqplib keeps the socket as `connection.stream`. Destroyed
 * with an error, amqplib runs its socket-error path: it stops the heartbeat timers and marks the connection
 * closed. Does nothing when the field is not a stream.
 */
export function destroySocket(model: ChannelModel): void {
  const stream: unknown = Reflect.get(model.connection, 'stream');
  if (typeof stream === 'object' && stream !== null && 'destroy' in stream && typeof stream.destroy === 'function') {
    stream.destroy(new Error('closed by busbar: the broker did not answer'));
  }
}

/**
 * A stand-in message for `channel.ack`/`channel.nack` by delivery tag: amqplib's ack and nack read only
 * `message.fields.deliveryTag` (lib/channel_model.js). A coalesced `multiple` ack names the last tag of a
 * run, whose message may be long gone; keeping every message for it would cost memory per delivery.
 */
export function byTag(deliveryTag: number): Message {
  return { fields: { deliveryTag } } as unknown as Message;
}

/** A cluster's node list for amqplib's connection recovery: `next()` moves to the following node. */
export interface Endpoints {
  /** The connect options amqplib gets once; their host and port are the current node's. */
  readonly options: Options.Connect;
  /** The current node, `host:port`. */
  readonly current: string;
  next(): void;
}

/**
 * amqplib's recovery reconnects with the one URL object it got from `connect()`, reading its `hostname` and
 * `port` again on every attempt (lib/connect.js, called per attempt from the `openModel` closure of
 * channel_api.js) and cloning the socket options each time (so `servername` follows the host). Getters on
 * that object make every reconnect go to the node `next()` chose: failover between cluster nodes without
 * replacing amqplib's recovery. Pinned by test/internals.test.ts.
 */
export function endpoints(
  base: Omit<Options.Connect, 'hostname' | 'port'>,
  hosts: readonly string[],
  defaultPort: number,
): Endpoints {
  const nodes = hosts.map((host) => {
    const url = new URL(`amqp://${host}`);
    return { hostname: url.hostname.replace(/^\[|\]$/g, ''), port: url.port ? Number(url.port) : defaultPort };
  });
  let index = 0;
  const node = () => nodes[index % nodes.length] as { hostname: string; port: number };
  const options: Options.Connect = {
    ...base,
    get hostname() {
      return node().hostname;
    },
    get port() {
      return node().port;
    },
  };
  return {
    options,
    get current() {
      return `${node().hostname}:${node().port}`;
    },
    next() {
      index = (index + 1) % nodes.length;
    },
  };
}
