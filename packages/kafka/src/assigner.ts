import type { PartitionAssigner } from 'kafkajs';
import { AssignerProtocol } from './kafkajs.js';

/**
 * Round robin that respects what each member subscribed to. kafkajs' own
 * round robin hands every member partitions of every topic in the group, which
 * breaks as soon as one busbar group reads two topics (two subscriptions, or a
 * topic and its retry topic on different members).
 */
export const subscriptionRoundRobin: PartitionAssigner = ({ cluster }) => ({
  name: 'BusbarRoundRobin',
  version: 0,
  async assign({ members, topics }) {
    const subscribers = new Map<string, string[]>();
    for (const member of [...members].sort((a, b) => (a.memberId < b.memberId ? -1 : 1))) {
      const metadata = AssignerProtocol.MemberMetadata.decode(member.memberMetadata);
      for (const topic of metadata?.topics ?? []) {
        let list = subscribers.get(topic);
        if (!list) {
          list = [];
          subscribers.set(topic, list);
        }
        list.push(member.memberId);
      }
    }
    const assignment = new Map<string, Record<string, number[]>>();
    for (const member of members) assignment.set(member.memberId, {});
    // One counter across topics, so many one-partition topics still spread over the members.
    let turn = 0;
    for (const topic of [...topics].sort()) {
      const owners = subscribers.get(topic);
      if (!owners || owners.length === 0) continue;
      const partitions = cluster
        .findTopicPartitionMetadata(topic)
        .map((p) => p.partitionId)
        .sort((a, b) => a - b);
      for (const partition of partitions) {
        const owner = assignment.get(owners[turn++ % owners.length] as string) as Record<string, number[]>;
        const list = owner[topic];
        if (list) list.push(partition);
        else owner[topic] = [partition];
      }
    }
    return [...assignment].map(([memberId, topicPartitions]) => ({
      memberId,
      memberAssignment: AssignerProtocol.MemberAssignment.encode({
        version: 0,
        assignment: topicPartitions,
        userData: Buffer.alloc(0),
      }),
    }));
  },
  protocol({ topics }) {
    return {
      name: 'BusbarRoundRobin',
      metadata: AssignerProtocol.MemberMetadata.encode({ version: 0, topics, userData: Buffer.alloc(0) }),
    };
  },
});
