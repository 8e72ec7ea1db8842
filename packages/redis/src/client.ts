import { ConnectionError } from '@busbar/core';
import { redactUrl, sanitizeError, withTimeout } from '@busbar/core/transport';
import { Cluster, type ClusterOptions, Command, type RedisOptions as IORedisOptions, Redis } from 'ioredis';

export type RedisClient = Redis | Cluster;

export interface ClientConfig {
  readonly url: URL;
  /** Overrides the URL's password. */
  readonly password?: string | undefined;
  readonly cluster: boolean;
  readonly clusterNodes?: readonly string[] | undefined;
  readonly connectTimeoutMs: number;
  readonly connectionName: string;
}

/** Reconnect quickly at first, then every second, forever: busbar reports the state instead of giving up. */
const retryStrategy = (attempt: number): number => Math.min(50 * attempt, 1_000);

/**
 * ioredis 6 speaks RESP3 by default, where a stream read is a map: its "legacy" reply mapping flattens that
 * to `[key, entries, key, entries]` instead of RESP2's `[[key, entries]]`, and every reply shape busbar parses
 * (XREAD, XREADGROUP, XAUTOCLAIM, XINFO, XPENDING) is RESP2's. `protocol: 2` (ioredis >= 6) keeps them so
 * and skips the HELLO round trip; ioredis 5 speaks only RESP2 and ignores the option.
 */
interface ProtocolOption {
  protocol?: 2;
}

/**
 * A new ioredis connection (not yet connected). `blocking` connections carry
 * one blocking XREAD/XREADGROUP at a time and never auto-pipeline.
 * `maxRetriesPerRequest: null` keeps commands queued across reconnects;
 * callers bound them with their own timeouts.
 */
export function createClient(config: ClientConfig, blocking: boolean): RedisClient {
  const { url } = config;
  const base: IORedisOptions & ProtocolOption = {
    protocol: 2,
    lazyConnect: true,
    connectTimeout: config.connectTimeoutMs,
    maxRetriesPerRequest: null,
    retryStrategy,
    connectionName: config.connectionName,
    showFriendlyErrorStack: false,
    ...(url.username ? { username: decodeURIComponent(url.username) } : {}),
    ...(config.password !== undefined
      ? { password: config.password }
      : url.password
        ? { password: decodeURIComponent(url.password) }
        : {}),
    ...(url.protocol === 'rediss:' ? { tls: { servername: url.hostname } } : {}),
  };
  const host = url.hostname.replace(/^\[|\]$/g, '') || '127.0.0.1';
  const port = Number(url.port || (url.protocol === 'rediss:' ? 6380 : 6379));
  if (config.cluster || config.clusterNodes) {
    const nodes = [{ host, port }];
    for (const node of config.clusterNodes ?? []) {
      const at = node.lastIndexOf(':');
      nodes.push({ host: node.slice(0, at), port: Number(node.slice(at + 1)) });
    }
    const options: ClusterOptions = {
      lazyConnect: true,
      enableAutoPipelining: !blocking,
      clusterRetryStrategy: retryStrategy,
      redisOptions: base,
    };
    return new Cluster(nodes, options);
  }
  const db = Number(url.pathname.slice(1) || 0);
  return new Redis({ ...base, host, port, db: Number.isInteger(db) ? db : 0, enableAutoPipelining: !blocking });
}

/**
 * Connects within `timeoutMs` or disconnects and throws a `ConnectionError`
 * built from the last (sanitized) error ioredis reported: its own connect
 * rejection only says "Connection is closed".
 */
export async function connectClient(
  client: RedisClient,
  config: ClientConfig,
  secrets: readonly string[],
): Promise<void> {
  let last: unknown;
  const onError = (error: unknown) => {
    last = error;
  };
  client.on('error', onError);
  try {
    await withTimeout(client.connect(), config.connectTimeoutMs, 'connect timed out');
  } catch (error) {
    client.disconnect();
    const cause = sanitizeError(last ?? error, secrets);
    throw new ConnectionError(`Could not connect to ${redactUrl(config.url)}: ${cause.message}`, { cause });
  } finally {
    client.off('error', onError);
  }
}

/**
 * A command whose key is not its first argument (XGROUP CREATE <key>, XINFO
 * GROUPS <key>), sent without auto-pipelining: ioredis' cluster
 * auto-pipelining routes by the first argument and would send it to the
 * wrong node; a plain command follows MOVED redirections.
 */
export function subcommand(client: RedisClient, name: string, ...args: (string | number)[]): Promise<unknown> {
  const command = new Command(name, args, { replyEncoding: 'utf8' });
  void client.sendCommand(command);
  return command.promise;
}

/**
 * A command with a Buffer reply. ioredis' auto-pipelining drops the command
 * name of `callBuffer`, so binary replies on an auto-pipelined client go
 * through `sendCommand` directly.
 */
export function callBuffer(client: RedisClient, name: string, ...args: (string | number | Buffer)[]): Promise<unknown> {
  const command = new Command(name, args, { replyEncoding: null });
  void client.sendCommand(command);
  return command.promise;
}
