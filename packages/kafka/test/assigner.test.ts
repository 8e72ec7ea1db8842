import { describe, expect, it } from 'vitest';
import { type PlanMember, PROTOCOLS, rangePlan, roundRobinPlan } from '../src/assigner.js';

const member = (id: string, ...topics: string[]): PlanMember => ({ id, topics: new Set(topics) });
const asObject = (plan: Map<string, Record<string, number[]>>) =>
  Object.fromEntries([...plan].map(([id, topics]) => [id, { ...topics }]));

describe('kafka assignment plans (the standard protocols, as Java and librdkafka compute them)', () => {
  it('offers the standard names first and the old busbar name last', () => {
    expect(PROTOCOLS).toEqual(['roundrobin', 'range', 'BusbarRoundRobin']);
  });

  it('roundrobin: one circle over all members across topics, skipping members not subscribed to the topic', () => {
    const partitions = new Map([
      ['t2', [0, 1]],
      ['t1', [0, 1, 2]],
    ]);
    const plan = roundRobinPlan([member('c', 't1'), member('a', 't1'), member('b', 't1', 't2')], partitions);
    expect(asObject(plan)).toEqual({
      a: { t1: [0] },
      b: { t1: [1], t2: [0, 1] },
      c: { t1: [2] },
    });
  });

  it('roundrobin: many one-partition topics still spread over the members', () => {
    const partitions = new Map(['x', 'y', 'z', 'w'].map((t) => [t, [0]]));
    const plan = roundRobinPlan([member('a', 'x', 'y', 'z', 'w'), member('b', 'x', 'y', 'z', 'w')], partitions);
    expect(asObject(plan)).toEqual({ a: { w: [0], y: [0] }, b: { x: [0], z: [0] } });
  });

  it('range: contiguous ranges per topic, the first members one more; a member of no topic gets nothing', () => {
    const partitions = new Map([
      ['t1', [0, 1, 2, 3, 4]],
      ['t2', [0, 1]],
    ]);
    const plan = rangePlan([member('b', 't1', 't2'), member('a', 't1'), member('idle')], partitions);
    expect(asObject(plan)).toEqual({ a: { t1: [0, 1, 2] }, b: { t1: [3, 4], t2: [0, 1] }, idle: {} });
  });
});
