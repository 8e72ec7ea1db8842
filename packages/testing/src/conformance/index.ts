import { describe } from 'vitest';
import { badInputTests } from './bad-input.js';
import { capabilityTests } from './capabilities.js';
import { type ConformanceOptions, Suite } from './context.js';
import { conventionTests } from './conventions.js';
import { deliveryTests, orderingTests, wildcardTests } from './delivery.js';
import { failureTests } from './failures.js';
import { fuzzTests } from './fuzz.js';
import { credentialTests, durableTests, lifecycleTests } from './lifecycle.js';
import { middlewareTests } from './middleware.js';
import { requestReplyTests } from './request-reply.js';

export { THROWABLES } from './bad-input.js';
export type { BusOverrides, ConformanceOptions } from './context.js';
export { CANARY } from './context.js';

/**
 * The executable form of the README's "What every transport promises": every transport must pass it.
 * Tests that a transport's capabilities rule out are not defined at all (not
 * skipped), so a green run means every applicable promise was checked.
 */
export function describeConformance(name: string, options: ConformanceOptions): void {
  describe(`conformance: ${name}`, () => {
    const suite = new Suite(options);
    describe('capabilities', () => capabilityTests(suite));
    describe('delivery', () => deliveryTests(suite));
    if (options.capabilities.ordering) describe('ordering', () => orderingTests(suite));
    if (options.capabilities.wildcards) describe('wildcards', () => wildcardTests(suite));
    describe('failures', () => failureTests(suite));
    describe('lifecycle', () => lifecycleTests(suite));
    describe('conventions', () => conventionTests(suite));
    describe('middleware', () => middlewareTests(suite));
    if (options.capabilities.requestReply) describe('request/reply', () => requestReplyTests(suite));
    if (options.capabilities.durableGroups) describe('durable groups', () => durableTests(suite));
    describe('bad input', () => {
      badInputTests(suite, name);
      fuzzTests(suite, options.fuzzRuns ?? 100);
    });
    if (options.badCredentialsUrl)
      describe('credentials', () => credentialTests(suite, options.badCredentialsUrl as string));
  });
}
