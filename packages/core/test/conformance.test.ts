import { connect, silentLogger } from '@busbar/core';
import { describeConformance, uniqueName } from '@busbar/testing';

// Its own in-process broker name, so nothing else in this process shares it.
const url = `memory://${uniqueName('mem')}`;

describeConformance('memory', {
  connect: (overrides) => connect({ url, logger: silentLogger, ...overrides }),
  capabilities: {
    durableGroups: true,
    persistent: false,
    ordering: true,
    wildcards: true,
    nativeDelay: true,
    replay: false,
  },
});
