import { connect, silentLogger } from '@busbar/core';
import { memoryFaults } from '@busbar/core/transport';
import { describeConformance, uniqueName } from '@busbar/testing';

// Its own in-process broker name, so nothing else in this process shares it.
const name = uniqueName('mem');
const url = `memory://${name}`;

describeConformance('memory', {
  connect: (overrides) => connect({ url, logger: silentLogger, ...overrides }),
  capabilities: {
    durableGroups: true,
    ordering: true,
    wildcards: true,
    requestReply: true,
  },
  fuzzRuns: 500,
  refuseWrites: async (topic) => {
    const restore = memoryFaults(name).refuse(topic);
    return async () => restore();
  },
});
