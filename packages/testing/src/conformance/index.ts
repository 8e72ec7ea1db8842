import { afterAll, afterEach, beforeAll, describe, expect } from 'vitest';
import { badInputTests } from './bad-input.js';
import { batchTests } from './batch.js';
import { capabilityTests } from './capabilities.js';
import { contentTypeTests } from './content-types.js';
import { type ConformanceOptions, type ConformanceSection, SECTIONS, Suite } from './context.js';
import { conventionTests } from './conventions.js';
import { delayTests } from './delay.js';
import { deliveryTests, orderingTests, wildcardTests } from './delivery.js';
import { failureTests } from './failures.js';
import { fuzzTests } from './fuzz.js';
import { credentialTests, durableTests, lifecycleTests, silentBrokerTests } from './lifecycle.js';
import { middlewareTests } from './middleware.js';
import { requestReplyTests } from './request-reply.js';
import { wrongPeerTests } from './wrong-peer.js';

export { THROWABLES } from './bad-input-cases.js';
export type { BusOverrides, ConformanceOptions, ConformanceSection } from './context.js';
export { CANARY, SECTIONS as CONFORMANCE_SECTIONS } from './context.js';
export type { WrongPeer } from './wrong-peer.js';
export { createWrongPeer } from './wrong-peer.js';

/** `url` (its first host, for a seed list) pointed at another host and port. */
function urlAt(url: string, host: string, port: number): string {
  const parsed = new URL(url.split(',')[0] as string);
  parsed.hostname = host;
  parsed.port = String(port);
  return parsed.toString();
}

/** The sections to define: all by default, or the named ones (an unknown name is an error, not a silent skip). */
export function sectionFilter(options: ConformanceOptions): (section: ConformanceSection) => boolean {
  if (options.sections === undefined) return () => true;
  const unknown = options.sections.filter((n) => !(SECTIONS as readonly string[]).includes(n));
  if (unknown.length > 0 || options.sections.length === 0) {
    throw new Error(
      `describeConformance: sections must name at least one of ${SECTIONS.join(', ')} (got ${JSON.stringify(options.sections)})`,
    );
  }
  const wanted = new Set<string>(options.sections);
  return (section) => wanted.has(section);
}

/**
 * The executable form of the README's "What every transport promises": every transport must pass it.
 * Tests that a transport's capabilities rule out are not defined at all (not
 * skipped), so a green run means every applicable promise was checked. With `sections`, only those
 * sections are defined (a section the capabilities rule out stays undefined even when named).
 */
export function describeConformance(name: string, options: ConformanceOptions): void {
  const run = sectionFilter(options);
  const caps = options.capabilities;
  describe(`conformance: ${name}`, () => {
    const suite = new Suite(options);
    // No path may arm a negative timer (Node prints TimeoutNegativeWarning on the user's stderr; a re-drive's
    // rate limit and a Kafka retry hold did): watched through every case, on every transport.
    const negativeTimers: string[] = [];
    const onWarning = (warning: Error) => {
      if (warning.name === 'TimeoutNegativeWarning') negativeTimers.push(warning.message);
    };
    beforeAll(() => {
      process.on('warning', onWarning);
    });
    afterAll(() => {
      process.off('warning', onWarning);
    });
    afterEach(() => {
      expect(negativeTimers.splice(0), 'negative timers armed during this case').toEqual([]);
    });
    if (run('capabilities')) describe('capabilities', () => capabilityTests(suite));
    if (run('delivery')) {
      describe('delivery', () => {
        deliveryTests(suite);
        contentTypeTests(suite);
      });
    }
    if (run('ordering') && caps.ordering) describe('ordering', () => orderingTests(suite));
    if (run('wildcards') && caps.wildcards) describe('wildcards', () => wildcardTests(suite));
    if (run('failures')) describe('failures', () => failureTests(suite));
    if (run('lifecycle')) describe('lifecycle', () => lifecycleTests(suite));
    if (run('conventions')) describe('conventions', () => conventionTests(suite));
    if (run('delayed publish')) describe('delayed publish', () => delayTests(suite));
    if (run('middleware')) describe('middleware', () => middlewareTests(suite));
    if (run('batch handlers')) describe('batch handlers', () => batchTests(suite));
    if (run('request/reply') && caps.requestReply) describe('request/reply', () => requestReplyTests(suite));
    if (run('durable groups') && caps.durableGroups) describe('durable groups', () => durableTests(suite));
    if (run('bad input')) {
      describe('bad input', () => {
        badInputTests(suite, name);
        fuzzTests(suite, options.fuzzRuns ?? 100);
      });
    }
    const { badCredentialsUrl, proxyableUrl } = options;
    if (run('credentials') && badCredentialsUrl)
      describe('credentials', () => credentialTests(suite, badCredentialsUrl));
    if (run('credentials') && proxyableUrl) describe('connect', () => silentBrokerTests(suite, proxyableUrl));
    const wrongPeerUrl =
      options.wrongPeerUrl ?? (proxyableUrl ? (h: string, p: number) => urlAt(proxyableUrl, h, p) : undefined);
    if (run('credentials') && wrongPeerUrl) describe('wrong peer', () => wrongPeerTests(suite, wrongPeerUrl));
  });
}
