import { connect, silentLogger } from '@busbar/core';
import { memoryFaults } from '@busbar/core/transport';
import { type ConformanceOptions, type ConformanceSection, describeConformance, uniqueName } from '@busbar/testing';
import { describe, expect, it } from 'vitest';
import { sectionFilter } from '../src/conformance/index.js';

const broker = uniqueName('mem');
const options: ConformanceOptions = {
  connect: (overrides) => connect({ url: `memory://${broker}`, logger: silentLogger, ...overrides }),
  capabilities: { durableGroups: true, ordering: true, wildcards: true, requestReply: true },
  refuseWrites: async (topic) => {
    const restore = memoryFaults(broker).refuse(topic);
    return async () => restore();
  },
};

describe('describeConformance sections', () => {
  // 'credentials' is named but ruled out (no badCredentialsUrl): it must stay undefined.
  describeConformance('memory (two sections)', { ...options, sections: ['capabilities', 'credentials'] });

  it('defines only the named sections that the options allow', ({ task }) => {
    const conformance = task.suite?.tasks.find((t) => t.name === 'conformance: memory (two sections)');
    expect(conformance?.type).toBe('suite');
    expect(conformance?.type === 'suite' ? conformance.tasks.map((t) => t.name) : []).toEqual(['capabilities']);
  });

  it('defines every section the capabilities allow without a filter', () => {
    const run = sectionFilter(options);
    expect(run('bad input') && run('request/reply') && run('capabilities')).toBe(true);
  });

  it('rejects an unknown or empty section list instead of running nothing', () => {
    expect(() => sectionFilter({ ...options, sections: ['bad-input' as ConformanceSection] })).toThrow(
      /sections must name at least one of capabilities, delivery/,
    );
    expect(() => sectionFilter({ ...options, sections: [] })).toThrow(/sections must name/);
    // @ts-expect-error: section names are a typed union
    const typo: ConformanceOptions = { ...options, sections: ['bad-input'] };
    expect(typo.sections).toHaveLength(1);
  });
});
