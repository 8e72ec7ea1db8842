import { connect, silentLogger } from '@busbar/core';
import { uniqueName } from '@busbar/testing';
import { describe } from 'vitest';
import { counterTests, lagTests } from './counters-suite.js';

const memory = () => connect({ url: `memory://${uniqueName('prom')}`, logger: silentLogger });

describe('prometheus counters on memory://', () => {
  counterTests(memory);
  lagTests(memory);
});
