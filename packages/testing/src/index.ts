/**
 * @busbar/testing: the conformance suite every busbar transport must pass,
 * a TCP fault proxy, shared idempotency-store tests, and test helpers.
 */
export { describeConformance } from './conformance/index.js';
export { describeIdempotencyStore } from './idempotency-store.js';
export { createFaultProxy } from './fault-proxy.js';
export { brokerUrls, brokerAvailable, reachable, uniqueName } from './brokers.js';
export { collect, waitFor, sleep } from './wait.js';
export type { ConformanceOptions } from './conformance/index.js';
export type { FaultProxy, FaultProxyOptions } from './fault-proxy.js';
export type { BrokerName } from './brokers.js';
export type { Collector } from './wait.js';
