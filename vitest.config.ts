import { defineConfig } from 'vitest/config';
import { ClustersFirst } from './vitest.sequencer.js';

// Tests import workspace packages through their `source` export condition, so
// `npm test` needs no build step and always runs the current sources.
export default defineConfig({
  resolve: { conditions: ['source', 'node', 'default'] },
  ssr: { resolve: { conditions: ['source', 'node', 'default'] } },
  test: {
    include: ['packages/*/test/**/*.test.ts', 'test/**/*.test.ts'],
    testTimeout: 30_000,
    hookTimeout: 60_000,
    pool: 'forks',
    // Most test time is spent waiting on brokers, not on CPU: on a 2-core CI machine vitest's default (cores - 1)
    // ran the files one at a time (16 min). Three at a time left the cores 45-65% idle (a CI pass of 1,575 s of
    // test time took 568 s); four, as the Node 22 pass of .ci/run runs, keeps them busy.
    maxWorkers: 4,
    sequence: { sequencer: ClustersFirst },
  },
});
