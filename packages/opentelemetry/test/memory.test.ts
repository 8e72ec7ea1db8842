import { connect, silentLogger } from '@busbar/core';
import { uniqueName } from '@busbar/testing';
import { describe } from 'vitest';
import { tracingTests, useTracing } from './tracing-suite.js';

describe('tracing on memory://', () => {
  const harness = useTracing();
  tracingTests('memory', harness, () => connect({ url: `memory://${uniqueName('otel')}`, logger: silentLogger }));
});
