import { isIP } from 'node:net';
import type { ConnectionOptions } from 'node:tls';
import { BusbarError, ConfigError, ConnectionError, TimeoutError } from '@busbar/core';
import { explainTls, redactUrl, withTimeout } from '@busbar/core/transport';
import { Cluster, type ClusterOptions, Command, type RedisOptions as IORedisOptions, Redis } from 'ioredis';
import { isReplyError, toBusbarError } from './errors.js';

export type RedisClient = Redis | Cluster;

export interface ClientConfig {
  readonly url: URL;
  /** Overrides the URL's password. */
  readonly password?: string | undefined;
  readonly cluster: boolean;
  readonly clusterNodes?: readonly string[] | undefined;
  readonly connectTimeoutMs: number;
  readonly connectionName: string;
  /** TLS settings (PEM strings); undefined for plaintext. `rediss:` URLs always use TLS. */
  readonly tls?: TlsSettings | undefined;
  /** Redis Sentinel: the sentinels to ask for the current primary of `name`. */
  readonly sentinel?: SentinelSettings | undefined;
}

export interface TlsSettings {
  readonly ca?: string | undefined;
  readonly cert?: string | undefined;
  readonly key?: string | undefined;
  readonly rejectUnauthorized?: boolean | undefined;
  readonly servername?: string | undefined;
}

export interface SentinelSettings {
  readonly name: string;
  readonly nodes: readonly { host: string; port: number }[];
  readonly username?: string | undefined;
  readonly password?: string | undefined;
}

/** Node's TLS options; SNI only for a host name (RFC 6066 forbids an IP address there, Node warns). */
function tlsOptions(settings: TlsSettings, host: string): ConnectionOptions {
  const servername = settings.servername ?? (isIP(host) === 0 ? host : undefined);
  return {
    ...(settings.ca !== undefined ? { ca: settings.ca } : {}),
    ...(settings.cert !== undefined ? { cert: settings.cert } : {}),
    ...(settings.key !== undefined ? { key: settings.key } : {}),
    ...(settings.rejectUnauthorized !== undefined ? { rejectUnauthorized: settings.rejectUnauthorized } : {}),
    ...(servername !== undefined ? { servername } : {}),
  };
}

/** A replica answers writes with READONLY (an old primary that came back after a failover): reconnect, resend. */
const reconnectOnError = (error: Error): 2 | false => (error.message.startsWith('READONLY') ? 2 : false);

/**
 * How long ioredis' `disconnect()` waits for the socket to close before it destroys it. ioredis arms that wait
 * even when the socket is long closed (every failed connect): its default of 2 s kept the process from exiting
 * for 2 s after connect() had failed. busbar disconnects only connections it is done with, so nothing waits on
 * the socket's last bytes.
 */
const DISCONNECT_MS = 100;

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
    disconnectTimeout: DISCONNECT_MS,
    retryStrategy,
    connectionName: config.connectionName,
    showFriendlyErrorStack: false,
    ...(url.username ? { username: decodeURIComponent(url.username) } : {}),
    ...(config.password !== undefined
      ? { password: config.password }
      : url.password
        ? { password: decodeURIComponent(url.password) }
        : {}),
  };
  const host = url.hostname.replace(/^\[|\]$/g, '') || '127.0.0.1';
  const tls = config.tls ?? (url.protocol === 'rediss:' ? {} : undefined);
  if (tls !== undefined) base.tls = tlsOptions(tls, host);
  if (config.sentinel) {
    const { sentinel } = config;
    return new Redis({
      ...base,
      sentinels: sentinel.nodes.map((n) => ({ ...n })),
      name: sentinel.name,
      role: 'master',
      ...(sentinel.username !== undefined ? { sentinelUsername: sentinel.username } : {}),
      ...(sentinel.password !== undefined ? { sentinelPassword: sentinel.password } : {}),
      // Sentinels speak TLS when the data nodes do (one setting, as Redis' own tls-replication does).
      ...(tls !== undefined ? { enableTLSForSentinelMode: true, sentinelTLS: tlsOptions(tls, host) } : {}),
      sentinelRetryStrategy: retryStrategy,
      // Not ioredis' failoverDetector: a +switch-master that arrives while the client is already reconnecting
      // aborts that connect, and ioredis then ends the client for good ("Connection is closed." on every
      // command; seen in the failover test). Without it a dead primary is left on its connection error, a hung
      // one once it answers again (READONLY, or its demotion unblocking the reads): reconnectOnError.
      reconnectOnError,
      enableAutoPipelining: !blocking,
    });
  }
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
  return new Redis({ ...base, host, port, db: databaseOf(url), enableAutoPipelining: !blocking });
}

/** The database a redis:// URL names (`/2`); config.ts has already refused a path that is no number. */
function databaseOf(url: URL): number {
  return Number(url.pathname.slice(1) || 0);
}

/**
 * Connects within `timeoutMs` or disconnects and throws a `ConnectionError` built from the last (sanitized)
 * error ioredis reported: its own connect rejection only says "Connection is closed". A TLS or credentials
 * failure ends the wait at once (not retryable: ioredis would try the same certificate or password forever).
 * `patient`: a refused or dropped connection is tried again (ioredis' retryStrategy) until the timeout, not
 * failed at once: for a subscription's own connection, opened while the bus is up, where a blip should cost a
 * moment, not the subscribe; the bus's first connect fails at once, so a wrong address is said at once.
 */
export async function connectClient(
  client: RedisClient,
  config: ClientConfig,
  secrets: readonly string[],
  patient = false,
): Promise<void> {
  const what = `Could not connect to ${redactUrl(config.url)}`;
  let last: unknown;
  let fatal: ((error: BusbarError) => void) | undefined;
  const failed = new Promise<never>((_, reject) => {
    fatal = reject;
  });
  const onError = (error: unknown) => {
    last = error;
    const typed = toBusbarError(error, { what, op: 'connect', secrets });
    if (!typed.retryable) fatal?.(typed);
  };
  client.on('error', onError);
  // A plaintext port takes a TLS hello for the start of a command and waits for the rest: say so at the timeout.
  let linked = false;
  const onConnect = () => {
    linked = true;
  };
  client.once('connect', onConnect);
  const tls = config.tls !== undefined || config.url.protocol.startsWith('rediss');
  const silence = () =>
    new TimeoutError(
      tls && !linked
        ? `no answer to the TLS handshake within ${config.connectTimeoutMs} ms (a plaintext port waits for a command and never answers a TLS hello: check the scheme and the port of the URL)`
        : 'connect timed out',
    );
  let onReady: (() => void) | undefined;
  const connected = patient
    ? new Promise<void>((resolve) => {
        onReady = resolve;
        client.once('ready', resolve);
        // Its rejection is one failed try; ioredis goes on reconnecting.
        client.connect().catch(() => undefined);
      })
    : client.connect();
  try {
    await withTimeout(Promise.race([connected, failed]), config.connectTimeoutMs, silence);
    const db = config.sentinel || config.cluster || config.clusterNodes ? 0 : databaseOf(config.url);
    if (db !== 0) await selectOrRefuse(client, db, config.connectTimeoutMs);
  } catch (error) {
    client.disconnect();
    if (BusbarError.is(error) && !BusbarError.is(error, 'BUSBAR_TIMEOUT')) throw error;
    const typed = toBusbarError(last ?? error, { what: `${what}${resetHint(config, last)}`, op: 'connect', secrets });
    if (typed.code === 'BUSBAR_CONNECTION') throw typed;
    // Nothing said more than the timeout: still a connection failure, for the caller.
    throw new ConnectionError(`${what}: ${typed.message}`, { cause: typed });
  } finally {
    client.off('error', onError);
    client.off('connect', onConnect);
    if (onReady) client.off('ready', onReady);
  }
}

/**
 * ioredis selects the URL's database after `connect()` has resolved and only emits its failure: a database the
 * server does not have (`databases 16`) left the bus connected, its commands going to database 0. Selected
 * again here and awaited, so connect() fails instead.
 */
async function selectOrRefuse(client: RedisClient, db: number, timeoutMs: number): Promise<void> {
  try {
    await withTimeout(client.call('SELECT', db), timeoutMs, 'SELECT timed out');
  } catch (error) {
    if (!isReplyError(error, 'ERR')) throw error;
    throw new ConfigError(`Invalid connect options: url: the server has no database ${db} (its 'databases' setting)`);
  }
}

/**
 * Under TLS 1.3 redis-server checks a client certificate after the handshake and, lacking a good one, resets
 * the connection: the client sees only ECONNRESET, so the message says what it most likely means. A plaintext
 * port resets on the TLS hello the same way; one that hangs up before the handshake is done is told by core.
 */
function resetHint(config: ClientConfig, error: unknown): string {
  const tls = config.tls !== undefined || config.url.protocol.startsWith('rediss');
  if (!tls || (error as { code?: unknown } | undefined)?.code !== 'ECONNRESET') return '';
  if (explainTls(String((error as Error).message)) !== undefined) return '';
  return ' (reset during TLS setup: does the server require a client certificate of its CA, tls-auth-clients yes? Or is the port a plaintext one?)';
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
