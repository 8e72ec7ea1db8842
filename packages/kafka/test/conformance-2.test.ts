import { brokerAvailable, describeConformance } from '@busbar/testing';
import { describe } from 'vitest';
import { kafkaConformance, SECOND_PART } from './conformance-options.js';

// Every section conformance.test.ts does not run (see conformance-options.ts).
const ok = await brokerAvailable('kafka');

describe.runIf(ok)('kafka', () => {
  describeConformance('kafka', kafkaConformance(SECOND_PART));
});
