import { brokerAvailable, describeConformance } from '@busbar/testing';
import { describe } from 'vitest';
import { FIRST_PART, kafkaConformance } from './conformance-options.js';

// The first part of the sections; conformance-2.test.ts runs the rest (see conformance-options.ts).
const ok = await brokerAvailable('kafka');

describe.runIf(ok)('kafka', () => {
  describeConformance('kafka', kafkaConformance(FIRST_PART));
});
