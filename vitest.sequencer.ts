import { BaseSequencer, type TestSpecification } from 'vitest/node';

/**
 * The cluster failover files (`*.cluster.test.ts`) first: each runs for minutes (JVMs and Erlang nodes restarted
 * one at a time), so started last they would run alone at the end; started first they overlap with the rest.
 */
export class ClustersFirst extends BaseSequencer {
  override async sort(files: TestSpecification[]): Promise<TestSpecification[]> {
    const sorted = await super.sort(files);
    const cluster = (f: TestSpecification) => f.moduleId.endsWith('.cluster.test.ts');
    return [...sorted.filter(cluster), ...sorted.filter((f) => !cluster(f))];
  }
}
