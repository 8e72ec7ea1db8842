import { connect, silentLogger } from '@busbar/core';
import { uniqueName } from '@busbar/testing';
import { describe } from 'vitest';
import { counterTests } from './counters-suite.js';

describe('prometheus counters on memory://', () => {
  counterTests(() => connect({ url: `memory://${uniqueName('prom')}`, logger: silentLogger }));
});
