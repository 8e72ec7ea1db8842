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
    // ran the files one at a time (16 min); three at a time keeps both cores busy.
    maxWorkers: 3,
    sequence: { sequencer: ClustersFirst },
  },
});
