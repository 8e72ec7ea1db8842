import type { Cluster, GroupMember, GroupMemberAssignment, PartitionAssigner } from 'kafkajs';
import { AssignerProtocol } from './internals.js';

/**
 * The assignment protocols a busbar member offers when it joins a group, most preferred first. The broker
 * picks one every member offers, so busbar shares a group with Java, librdkafka (kcat, confluent-kafka-*)
 * and kafkajs members configured with `roundrobin` or `range` (Java's default `range, cooperative-sticky`
 * meets busbar on `range`; librdkafka's default `range, roundrobin` on either). `BusbarRoundRobin` is the
 * name busbar used before: still offered, last, so members of an older busbar can share a group with new
 * ones during a rolling upgrade. Cooperative (incremental) protocols are not offered: kafkajs rebalances
 * eagerly only.
 */
export const PROTOCOLS = ['roundrobin', 'range', 'BusbarRoundRobin'] as const;
export type ProtocolName = (typeof PROTOCOLS)[number];

/** A group member as the leader sees it: its id and the topics it subscribed to (from its metadata). */
export interface PlanMember {
  readonly id: string;
  readonly topics: ReadonlySet<string>;
}

/** member id -> topic -> partitions. Every member is in it, also with nothing assigned. */
export type Plan = Map<string, Record<string, number[]>>;

function emptyPlan(members: readonly PlanMember[]): Plan {
  return new Map(members.map((m) => [m.id, Object.create(null) as Record<string, number[]>]));
}

function give(plan: Plan, member: string, topic: string, partitions: number[]): void {
  if (partitions.length === 0) return;
  const owned = plan.get(member) as Record<string, number[]>;
  const list = owned[topic];
  if (list) list.push(...partitions);
  else owned[topic] = partitions;
}

/** Java's RoundRobinAssignor (and librdkafka's `roundrobin`): every partition of every topic, in sorted
 * order, goes to the next member in a circle of all members (sorted by id) that subscribed to its topic.
 * One circle across topics, so many one-partition topics (retry topics) still spread over the members. */
export function roundRobinPlan(
  members: readonly PlanMember[],
  partitions: ReadonlyMap<string, readonly number[]>,
): Plan {
  const sorted = [...members].sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
  const plan = emptyPlan(sorted);
  let next = 0;
  for (const topic of [...partitions.keys()].sort()) {
    for (const partition of partitions.get(topic) as readonly number[]) {
      for (let tried = 0; tried < sorted.length; tried++) {
        const member = sorted[next++ % sorted.length] as PlanMember;
        if (member.topics.has(topic)) {
          give(plan, member.id, topic, [partition]);
          break;
        }
      }
    }
  }
  return plan;
}

/** Java's RangeAssignor (and librdkafka's `range`): per topic, its subscribers (sorted by id) get
 * contiguous ranges, the first `partitions % subscribers` of them one partition more. */
export function rangePlan(members: readonly PlanMember[], partitions: ReadonlyMap<string, readonly number[]>): Plan {
  const sorted = [...members].sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
  const plan = emptyPlan(sorted);
  for (const topic of [...partitions.keys()].sort()) {
    const subscribers = sorted.filter((m) => m.topics.has(topic));
    if (subscribers.length === 0) continue;
    const all = partitions.get(topic) as readonly number[];
    const each = Math.floor(all.length / subscribers.length);
    const extra = all.length % subscribers.length;
    subscribers.forEach((member, i) => {
      const start = each * i + Math.min(i, extra);
      give(plan, member.id, topic, all.slice(start, start + each + (i < extra ? 1 : 0)));
    });
  }
  return plan;
}

export interface AssignerDeps {
  /** Partition ids of existing topics the leader's own metadata does not cover (other members' topics). */
  readonly partitions: (topics: readonly string[]) => Promise<ReadonlyMap<string, readonly number[]>>;
  readonly warn: (message: string) => void;
}

function subscriptions(members: readonly GroupMember[], warn: AssignerDeps['warn']): PlanMember[] {
  return members.map((m) => {
    try {
      const metadata = AssignerProtocol.MemberMetadata.decode(m.memberMetadata);
      return { id: m.memberId, topics: new Set(metadata?.topics ?? []) };
    } catch {
      warn(`Kafka group member ${m.memberId} sent subscription metadata busbar cannot read; it gets no partitions`);
      return { id: m.memberId, topics: new Set<string>() };
    }
  });
}

/**
 * The partitions of every topic any member subscribed to. kafkajs hands the leader only its own topics;
 * the others (a kcat member's, another busbar subscription of the same group on another topic) are looked
 * up. A topic without metadata (deleted, not created yet) is left out, as Java's assignors do.
 */
async function topicPartitions(
  cluster: Cluster,
  members: readonly PlanMember[],
  deps: AssignerDeps,
): Promise<Map<string, readonly number[]>> {
  const topics = new Set<string>();
  for (const m of members) for (const topic of m.topics) topics.add(topic);
  const result = new Map<string, readonly number[]>();
  const unknown: string[] = [];
  for (const topic of topics) {
    let ids: number[] = [];
    try {
      ids = cluster.findTopicPartitionMetadata(topic).map((p) => p.partitionId);
    } catch {
      // No metadata loaded at all: looked up below.
    }
    if (ids.length > 0)
      result.set(
        topic,
        ids.sort((a, b) => a - b),
      );
    else unknown.push(topic);
  }
  if (unknown.length > 0) {
    try {
      for (const [topic, ids] of await deps.partitions(unknown)) {
        if (ids.length > 0)
          result.set(
            topic,
            [...ids].sort((a, b) => a - b),
          );
      }
    } catch (error) {
      deps.warn(
        `Kafka group assignment: no partition metadata for '${unknown.join("', '")}' (${(error as Error).message}); those topics are not assigned this time`,
      );
    }
  }
  return result;
}

function encode(plan: Plan): GroupMemberAssignment[] {
  return [...plan].map(([memberId, assignment]) => ({
    memberId,
    memberAssignment: AssignerProtocol.MemberAssignment.encode({ version: 0, assignment, userData: Buffer.alloc(0) }),
  }));
}

function assigner(name: ProtocolName, plan: typeof roundRobinPlan, deps: AssignerDeps): PartitionAssigner {
  return ({ cluster }) => ({
    name,
    version: 0,
    async assign({ members }) {
      const planMembers = subscriptions(members, deps.warn);
      return encode(plan(planMembers, await topicPartitions(cluster, planMembers, deps)));
    },
    // ConsumerProtocolSubscription v0 (version, topics, user data): what every client reads, later versions
    // only add fields at the end.
    protocol({ topics }) {
      return {
        name,
        metadata: AssignerProtocol.MemberMetadata.encode({ version: 0, topics, userData: Buffer.alloc(0) }),
      };
    },
  });
}

/** busbar's assigners in the order of {@link PROTOCOLS}. */
export function busbarAssigners(deps: AssignerDeps): PartitionAssigner[] {
  return [
    assigner('roundrobin', roundRobinPlan, deps),
    assigner('range', rangePlan, deps),
    assigner('BusbarRoundRobin', roundRobinPlan, deps),
  ];
}
