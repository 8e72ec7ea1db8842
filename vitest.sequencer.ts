import { BaseSequencer, type TestSpecification } from 'vitest/node';

/**
 * Files that take over a minute in a CI pass (2 cores, 4 workers), longest first. A fresh clone has no
 * durations for vitest's own order to go by, and it starts the smallest files last: one of these started late
 * runs alone at the end (Kafka's conformance suite did, for the last 2 minutes of a pass).
 */
const LONG = [
  '/packages/kafka/test/conformance-2.test.ts', // about 110 s: the second half of Kafka's conformance suite
  '/packages/kafka/test/conformance.test.ts', // about 100 s: its first half
  '/test/kafka4.test.ts', // 90-100 s: a second Kafka broker
  '/packages/redis/test/cluster.test.ts', // 85 s: a Redis Cluster
  '/test/pack.test.ts', // 75-110 s: packs, installs and runs every package
];

/**
 * The cluster failover files (`*.cluster.test.ts`, minutes each: JVMs and Erlang nodes restarted one at a
 * time) first, then the other long files, then every conformance suite (about 40 s each), then the rest.
 */
export class ClustersFirst extends BaseSequencer {
  override async sort(files: TestSpecification[]): Promise<TestSpecification[]> {
    const sorted = await super.sort(files);
    const rank = (f: TestSpecification): number => {
      if (f.moduleId.endsWith('.cluster.test.ts')) return 0;
      const long = LONG.findIndex((suffix) => f.moduleId.endsWith(suffix));
      if (long >= 0) return 1 + long;
      return f.moduleId.endsWith('/conformance.test.ts') ? 1 + LONG.length : 2 + LONG.length;
    };
    // Array.prototype.sort is stable: within a rank, vitest's own order stays.
    return sorted.sort((a, b) => rank(a) - rank(b));
  }
}
