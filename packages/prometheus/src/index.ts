/**
 * @busbar/prometheus: Prometheus metrics for every busbar transport (fed from
 * core's diagnostics channels), a `/metrics` server, and readiness/liveness
 * handlers built on `bus.health()`.
 */

export type { HealthCheck, HealthOptions, HealthReport, HealthSource } from './health.js';
export { healthHandler, liveness, readiness, sendHealth } from './health.js';
export type { LagReading, LagSource } from './lag.js';
export { busLagSource } from './lag.js';

export type { BusbarMetrics, BusbarMetricsOptions } from './metrics.js';
export { OTHER_TOPIC, registerBusbarMetrics } from './metrics.js';
export type { MetricsServer, ServeMetricsOptions } from './serve.js';
export { metricsHandler, serveMetrics } from './serve.js';
