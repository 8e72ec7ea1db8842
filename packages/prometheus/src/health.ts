import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Health } from '@busbar/core';

/** Anything with busbar's `health()`: a `Bus`. */
export interface HealthSource {
  health(): Health;
}

export type HealthCheck = 'ready' | 'live';

export interface HealthOptions {
  /**
   * Liveness only: a connection may be down or reconnecting this long before
   * the process is reported dead (so a broker restart does not get every pod
   * killed). Default 60 000 ms.
   */
  maxDownMs?: number;
}

export interface HealthReport {
  readonly ok: boolean;
  /** 200 when ok, else 503. */
  readonly statusCode: 200 | 503;
  readonly body: {
    readonly status: 'ok' | 'unavailable';
    readonly check: HealthCheck;
    readonly buses: readonly Health[];
  };
}

const list = (sources: HealthSource | readonly HealthSource[]): readonly HealthSource[] =>
  Array.isArray(sources) ? sources : [sources as HealthSource];

/**
 * Stands in for a source whose `health()` threw: it is neither ready nor live.
 * Thrown inside an http request listener, the error would be uncaught (a
 * crash) and the probe would get no answer at all.
 */
const UNREADABLE: Health = { status: 'down', transport: 'unknown', connections: [], subscriptions: [] };

function read(sources: HealthSource | readonly HealthSource[]): Health[] {
  return list(sources).map((source) => {
    try {
      return source.health();
    } catch {
      return UNREADABLE;
    }
  });
}

/**
 * Readiness: every connection of every bus is up and no subscription is
 * closing (so a draining instance stops getting traffic).
 */
export function readiness(sources: HealthSource | readonly HealthSource[]): HealthReport {
  const buses = read(sources);
  const ok = buses.every((h) => h.status === 'up' && h.subscriptions.every((s) => s.state === 'running'));
  return report('ready', ok, buses);
}

/**
 * Liveness: false only when a connection has been down or reconnecting for
 * longer than `maxDownMs`, i.e. when restarting the process may help.
 */
export function liveness(sources: HealthSource | readonly HealthSource[], options: HealthOptions = {}): HealthReport {
  const maxDownMs = options.maxDownMs ?? 60_000;
  const now = Date.now();
  const buses = read(sources);
  const ok = buses.every(
    (h) => h !== UNREADABLE && h.connections.every((c) => c.state === 'up' || now - c.since.getTime() <= maxDownMs),
  );
  return report('live', ok, buses);
}

function report(check: HealthCheck, ok: boolean, buses: readonly Health[]): HealthReport {
  return { ok, statusCode: ok ? 200 : 503, body: { status: ok ? 'ok' : 'unavailable', check, buses } };
}

/** Writes a report as JSON; works with a plain `http` response and with Express's (which extends it). */
export function sendHealth(res: ServerResponse, result: HealthReport): void {
  let body: string;
  try {
    body = JSON.stringify(result.body);
  } catch {
    // A health source's report that JSON cannot hold (a BigInt, a cycle): the status code still answers the probe.
    body = JSON.stringify({ status: result.body.status, check: result.body.check, buses: [] });
  }
  res.writeHead(result.statusCode, { 'content-type': 'application/json; charset=utf-8', 'cache-control': 'no-store' });
  res.end(body);
}

/**
 * A `(req, res)` handler for `http.createServer` or Express
 * (`app.get('/readyz', healthHandler(bus))`). For Fastify, call
 * {@link readiness} / {@link liveness} in a route and send `statusCode` and `body`.
 */
export function healthHandler(
  sources: HealthSource | readonly HealthSource[],
  check: HealthCheck = 'ready',
  options: HealthOptions = {},
): (req: IncomingMessage, res: ServerResponse) => void {
  return (_req, res) => answerHealth(res, () => (check === 'ready' ? readiness(sources) : liveness(sources, options)));
}

/**
 * Sends a report, or a bare 503 when computing it threw (a health source with
 * a malformed report): a request listener that throws is an uncaught exception.
 */
export function answerHealth(res: ServerResponse, compute: () => HealthReport): void {
  let result: HealthReport;
  try {
    result = compute();
  } catch {
    res.writeHead(503, { 'content-type': 'text/plain; charset=utf-8', 'cache-control': 'no-store' });
    res.end('health check failed\n');
    return;
  }
  sendHealth(res, result);
}
