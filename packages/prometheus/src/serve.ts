import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { type Registry, register } from 'prom-client';
import { type HealthOptions, type HealthSource, liveness, readiness, sendHealth } from './health.js';

/** A `(req, res)` handler answering with the registry's Prometheus text; for `http.createServer` or Express. */
export function metricsHandler(registry: Registry = register): (req: IncomingMessage, res: ServerResponse) => void {
  return (_req, res) => {
    registry.metrics().then(
      (text) => {
        res.writeHead(200, { 'content-type': registry.contentType, 'cache-control': 'no-store' });
        res.end(text);
      },
      (error: unknown) => {
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
}

export interface MetricsServer {
  readonly port: number;
  /** `http://host:port` */
  readonly url: string;
  readonly server: Server;
  close(): Promise<void>;
}

/** Serves `/metrics` (and `/readyz`, `/livez` when `health` is given) on a plain `http` server. */
export async function serveMetrics(options: ServeMetricsOptions = {}): Promise<MetricsServer> {
  const path = options.path ?? '/metrics';
  const metrics = metricsHandler(options.registry ?? register);
  const health = options.health;
  const server = createServer((req, res) => {
    const url = (req.url ?? '/').split('?')[0];
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { allow: 'GET, HEAD' }).end();
    } else if (url === path) {
      metrics(req, res);
    } else if (health && url === '/readyz') {
      sendHealth(res, readiness(health));
    } else if (health && url === '/livez') {
      sendHealth(res, liveness(health, options));
    } else {
      res.writeHead(404, { 'content-type': 'text/plain; charset=utf-8' }).end('not found\n');
    }
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port ?? 9464, options.host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const address = server.address() as AddressInfo;
  const host = address.family === 'IPv6' ? `[${address.address}]` : address.address;
  return {
    port: address.port,
    url: `http://${host === '[::]' ? 'localhost' : host === '0.0.0.0' ? 'localhost' : host}:${address.port}`,
    server,
    close: () =>
      new Promise<void>((resolve, reject) => {
        server.close((error) => (error ? reject(error) : resolve()));
        server.closeAllConnections();
      }),
  };
}
