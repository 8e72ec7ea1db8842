/**
 * @busbar/testing: the conformance suite every busbar transport must pass,
 * a TCP fault proxy, shared idempotency-store tests, and test helpers.
 */

export type { BrokerName } from './brokers.js';
export { brokerAvailable, brokerUrls, freePort, reachable, uniqueName } from './brokers.js';
export type { ConformanceOptions, ConformanceSection, WrongPeer } from './conformance/index.js';
export { CANARY, CONFORMANCE_SECTIONS, createWrongPeer, describeConformance, THROWABLES } from './conformance/index.js';
export type { FailoverResult, FailoverWorkload } from './failover.js';
export { recordFailover, runFailover } from './failover.js';
export type { FaultProxy, FaultProxyOptions } from './fault-proxy.js';
export { createFaultProxy } from './fault-proxy.js';
export { flowBehindHeld } from './held.js';
export { describeIdempotencyStore } from './idempotency-store.js';
export type { CertFiles, TestPki } from './pki.js';
export { createTestPki, opensslAvailable } from './pki.js';
export type { ConnectFailure } from './secrets.js';
export { errorTexts, expectFatal, expectNoSecret, failedConnect, pemLines, roundTrip } from './secrets.js';
export { watchUncaught } from './uncaught.js';
export type { Collector } from './wait.js';
export { collect, sleep, waitFor } from './wait.js';
