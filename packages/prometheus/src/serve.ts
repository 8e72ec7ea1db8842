import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { ConfigError } from '@busbar/core';
import { type Registry, register } from 'prom-client';
import { answerHealth, type HealthOptions, type HealthSource, liveness, readiness } from './health.js';

/** A `(req, res)` handler answering with the registry's Prometheus text; for `http.createServer` or Express. */
export function metricsHandler(registry: Registry = register): (req: IncomingMessage, res: ServerResponse) => void {
  return (_req, res) => {
    registry.metrics().then(
      (text) => {
        // The client left (or the server closed) while the metrics were collected.
        if (res.destroyed) return;
        res.writeHead(200, { 'content-type': registry.contentType, 'cache-control': 'no-store' });
        res.end(text);
      },
      (error: unknown) => {
        if (res.destroyed) return;
        res.writeHead(500, { 'content-type': 'text/plain; charset=utf-8' });
        res.end(`# metrics collection failed: ${error instanceof Error ? error.name : 'error'}\n`);
      },
    );
  };
}

export interface ServeMetricsOptions extends HealthOptions {
  /** Port to listen on; 0 picks a free one. Default 9464. */
  port?: number;
  /** Interface to bind. Default: all. */
  host?: string;
  /** Default: prom-client's global `register`. */
  registry?: Registry;
  /** Default `/metrics`. */
  path?: string;
  /** Buses answered on `/readyz` and `/livez` (200 or 503 with a JSON body). Without, those paths are 404. */
  health?: HealthSource | readonly HealthSource[];
  /** Connections served at once; more are dropped as they arrive. Default 100. */
  maxConnections?: number;
  /** Longest a client may take to send its request headers, in ms; a slower one is disconnected. Default 10 000. */
  requestTimeoutMs?: number;
}

export interface MetricsServer {
  readonly port: number;
  /** `http://host:port` */
  readonly url: string;
  readonly server: Server;
  /** Stops listening and drops every connection. Safe to call more than once. */
  close(): Promise<void>;
}

/** A socket with nothing read or written for this long is dropped (a client that stopped reading its response). */
const IDLE_TIMEOUT_MS = 30_000;

function whole(name: string, value: number | undefined, fallback: number, min: number, max: number): number {
  const n = value ?? fallback;
  if (typeof n !== 'number' || !Number.isInteger(n) || n < min || n > max) {
    throw new ConfigError(`serveMetrics: ${name} must be a whole number from ${min} to ${max}`);
  }
  return n;
}

/** A typed error for what `listen` refused, with whether trying again later may help. */
function listenError(error: unknown, port: number, host: string | undefined): ConfigError {
  const code = (error as { code?: unknown } | undefined)?.code;
  const where = `${host ?? 'all interfaces'} port ${port}`;
  if (code === 'EADDRINUSE') {
    // Often the previous instance still releasing it: worth another try.
    return new ConfigError(`serveMetrics: ${where} is already in use`, { cause: error, retryable: true });
  }
  if (code === 'EACCES') return new ConfigError(`serveMetrics: not allowed to listen on ${where}`, { cause: error });
  const why = error instanceof Error ? error.message : String(error);
  return new ConfigError(`serveMetrics: cannot listen on ${where}: ${why}`, { cause: error });
}

/** Serves `/metrics` (and `/readyz`, `/livez` when `health` is given) on a plain `http` server. */
export async function serveMetrics(options: ServeMetricsOptions = {}): Promise<MetricsServer> {
  const port = whole('port', options.port, 9464, 0, 65_535);
  const maxConnections = whole('maxConnections', options.maxConnections, 100, 1, 1_000_000);
  const requestTimeoutMs = whole('requestTimeoutMs', options.requestTimeoutMs, 10_000, 1, 2 ** 31 - 1);
  const path = options.path ?? '/metrics';
  const metrics = metricsHandler(options.registry ?? register);
  const health = options.health;
  const route = (req: IncomingMessage, res: ServerResponse): void => {
    const url = (req.url ?? '/').split('?')[0];
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { allow: 'GET, HEAD' }).end();
    } else if (url === path) {
      metrics(req, res);
    } else if (health && url === '/readyz') {
      answerHealth(res, () => readiness(health));
    } else if (health && url === '/livez') {
      answerHealth(res, () => liveness(health, options));
    } else {
      res.writeHead(404, { 'content-type': 'text/plain; charset=utf-8' }).end('not found\n');
    }
  };
  const server = createServer(
    {
      // Node's defaults let a client that trickles its headers hold a connection for 60 s or more.
      headersTimeout: requestTimeoutMs,
      requestTimeout: requestTimeoutMs,
      connectionsCheckingInterval: Math.min(1_000, requestTimeoutMs),
    },
    (req, res) => {
      try {
        route(req, res);
      } catch {
        // A listener that throws is an uncaught exception: the process would go down with its metrics server.
        if (!res.headersSent) res.writeHead(500, { 'content-type': 'text/plain; charset=utf-8' });
        res.end();
      }
    },
  );
  server.maxConnections = maxConnections;
  server.timeout = IDLE_TIMEOUT_MS;
  await new Promise<void>((resolve, reject) => {
    const fail = (error: unknown) => reject(listenError(error, port, options.host));
    server.once('error', fail);
    try {
      server.listen(port, options.host, () => {
        server.off('error', fail);
        resolve();
      });
    } catch (error) {
      server.off('error', fail);
      fail(error);
    }
  });
  // Once listening, the server reports failed accepts (EMFILE when the process runs out of descriptors) as
  // 'error' events, which crash the process without a listener; it keeps listening, so there is nothing to do.
  server.on('error', () => undefined);
  const address = server.address() as AddressInfo;
  const host = address.family === 'IPv6' ? `[${address.address}]` : address.address;
  let closed: Promise<void> | undefined;
  return {
    port: address.port,
    url: `http://${host === '[::]' ? 'localhost' : host === '0.0.0.0' ? 'localhost' : host}:${address.port}`,
    server,
    close: () => {
      closed ??= new Promise<void>((resolve) => {
        // Not listening any more is what close() is for: the only error close reports is "was not running".
        server.close(() => resolve());
        server.closeAllConnections();
      });
      return closed;
    },
  };
}
