import { type Bus, BusbarError, connect, type Message, silentLogger } from '@busbar/core';
import { brokerAvailable, brokerUrls, collect, sleep, uniqueName, waitFor } from '@busbar/testing';
import { afterAll, describe, expect, it } from 'vitest';
import { driver, type KafkaRaw } from '../src/index.js';
import { AssignerProtocol, Kafka, logLevel } from '../src/internals.js';
import { javaAvailable, javaConsumer, kcatAvailable, kcatConsumer } from './foreign-members.js';

const ok = await brokerAvailable('kafka');
const kcat = ok && kcatAvailable();
const java = ok && javaAvailable();
const BROKER = '127.0.0.1:9092';
const CLIENT_ID = 'busbar-interop';

/** kcat as librdkafka's stand-in (with an explicit strategy), and a Java consumer on the Java defaults. */
const cases = [
  { client: 'kcat', strategy: 'roundrobin', foreignFirst: false },
  { client: 'kcat', strategy: 'range', foreignFirst: true },
  { client: 'java', strategy: 'range', foreignFirst: false },
].filter((c) => (c.client === 'kcat' ? kcat : java));

describe.runIf(kcat || java)('kafka consumer groups shared with native clients (kcat / librdkafka, Java)', () => {
  const buses: Bus[] = [];
  const admin = new Kafka({ brokers: [BROKER], logLevel: logLevel.NOTHING }).admin();
  const open = async (partitions = 3) => {
    const bus = await connect({
      url: brokerUrls.kafka,
      driver,
      logger: silentLogger,
      clientId: CLIENT_ID,
      partitions,
      sessionTimeoutMs: 6_000,
      heartbeatIntervalMs: 300,
      rebalanceTimeoutMs: 6_000,
      maxWaitTimeMs: 200,
    });
    buses.push(bus);
    return bus;
  };

  afterAll(async () => {
    await Promise.all(buses.map((bus) => bus.close().catch(() => undefined)));
    await admin.disconnect();
  });

  /** The group as the broker sees it: state, chosen protocol, and each member's partitions of `topic`. */
  async function describe(group: string, topic: string) {
    const { groups } = await admin.describeGroups([group]);
    const g = groups[0];
    return {
      state: g?.state,
      protocol: g?.protocol,
      members: (g?.members ?? []).map((m) => ({
        clientId: m.clientId,
        partitions: AssignerProtocol.MemberAssignment.decode(m.memberAssignment)?.assignment[topic] ?? [],
      })),
    };
  }

  it.each(cases)(
    'busbar and $client ($strategy, $client first: $foreignFirst) share a 4-partition group: both get partitions, nothing lost across the rebalances',
    async ({ client, strategy, foreignFirst }) => {
      await admin.connect();
      const topic = uniqueName('interop-group');
      const group = uniqueName('g');
      const bus = await open(4);
      // The topic exists (4 partitions) before the foreign member subscribes to it.
      await bus.publish(topic, { seq: -1 });
      const busbarSeen = new Map<number, number>();
      const busbarPartitions = new Set<number>();
      const handler = async (m: Message<{ seq: number }>) => {
        busbarPartitions.add((m.raw as KafkaRaw).partition);
        busbarSeen.set(m.payload.seq, (busbarSeen.get(m.payload.seq) ?? 0) + 1);
      };
      let seq = 0;
      let publishing = false;
      let publisher: Promise<void> = Promise.resolve();
      const publish = () => {
        publishing = true;
        publisher = (async () => {
          while (publishing) {
            const batch = Array.from({ length: 10 }, () => ({ payload: { seq: seq++ }, key: `k${seq % 16}` }));
            await bus.publishBatch(topic, batch);
            await sleep(100);
          }
        })();
      };
      // The foreign member leaves the group on its own (cleanly, committing what it printed) after 150 records.
      const spawnMember = () =>
        client === 'kcat' ? kcatConsumer(BROKER, group, topic, strategy, 150) : javaConsumer(BROKER, group, topic, 150);
      let member: ReturnType<typeof kcatConsumer> | undefined;
      try {
        if (foreignFirst) {
          member = spawnMember();
          await waitFor(
            async () => (await describe(group, topic)).state === 'Stable',
            20_000,
            `${client} in its group`,
          );
          await bus.subscribe(topic, handler, { group, prefetch: 50 });
          publish();
        } else {
          await bus.subscribe(topic, handler, { group, prefetch: 50 });
          publish();
          await sleep(500);
          member = spawnMember();
        }
        const foreign = member;

        // Both members hold partitions of the topic, and together all four, under the standard protocol.
        let shared: Awaited<ReturnType<typeof describe>> | undefined;
        await waitFor(
          async () => {
            shared = await describe(group, topic);
            return (
              shared.state === 'Stable' &&
              shared.members.length === 2 &&
              shared.members.every((m) => m.partitions.length > 0)
            );
          },
          30_000,
          `a stable group of busbar and ${client} (${client} said: ${foreign.log.join(' | ')})`,
        );
        expect(shared?.protocol).toBe(strategy);
        expect(shared?.members.flatMap((m) => m.partitions).sort()).toEqual([0, 1, 2, 3]);
        const foreignPartitions = shared?.members.find((m) => m.clientId !== CLIENT_ID)?.partitions ?? [];
        expect(foreignPartitions.length).toBeGreaterThan(0);
        expect(foreignPartitions.length).toBeLessThan(4);

        // The foreign member leaves: busbar takes all four partitions over from its commits.
        expect(await foreign.exited).toBe(0);
        await waitFor(
          async () => {
            const alone = await describe(group, topic);
            return alone.state === 'Stable' && alone.members.length === 1 && alone.members[0]?.partitions.length === 4;
          },
          30_000,
          'busbar alone in the group',
        );
        await sleep(1_000);
        publishing = false;
        await publisher;

        const foreignSeen = new Map<number, number>();
        for (const r of foreign.records) {
          const value = (JSON.parse(r.value) as { seq: number }).seq;
          foreignSeen.set(value, (foreignSeen.get(value) ?? 0) + 1);
        }
        const total = seq;
        const missing = () => {
          const lost: number[] = [];
          for (let n = 0; n < total; n++) if (!busbarSeen.has(n) && !foreignSeen.has(n)) lost.push(n);
          return lost;
        };
        await waitFor(
          () => missing().length === 0,
          30_000,
          `every published message seen by busbar or ${client}`,
        ).catch((error: unknown) => {
          throw new Error(`${(error as Error).message}: missing ${missing().slice(0, 20).join(', ')}`);
        });
        let duplicates = 0;
        for (let n = 0; n < total; n++) duplicates += (busbarSeen.get(n) ?? 0) + (foreignSeen.get(n) ?? 0) - 1;
        console.log(
          `[kafka interop] ${client} ${strategy}: published ${total}, busbar ${busbarSeen.size}, ${client} ${foreignSeen.size} on partitions ${foreignPartitions.join(',')}, duplicates ${duplicates}`,
        );
        expect(foreignSeen.size).toBe(150);
        expect([...busbarPartitions].sort()).toEqual([0, 1, 2, 3]);
        // A rebalance redelivers what the old owner had not committed yet: at most its prefetch per handover.
        expect(duplicates).toBeLessThanOrEqual(100);
      } finally {
        publishing = false;
        await publisher;
        await member?.stop();
      }
    },
    90_000,
  );

  it.runIf(kcat)(
    'a group whose members speak none of the standard protocols fails subscribe with a ConfigError naming the cause',
    async () => {
      await admin.connect();
      const topic = uniqueName('interop-coop');
      const group = uniqueName('g');
      const bus = await open();
      await bus.publish(topic, { n: 0 });
      const member = kcatConsumer(BROKER, group, topic, 'cooperative-sticky');
      try {
        await waitFor(async () => (await describe(group, topic)).state === 'Stable', 20_000, 'kcat alone in the group');
        const failure = await bus
          .subscribe(topic, async () => undefined, { group })
          .then(
            () => undefined,
            (error: unknown) => error,
          );
        expect(BusbarError.is(failure, 'BUSBAR_CONFIG')).toBe(true);
        expect((failure as BusbarError).retryable).toBe(false);
        expect((failure as Error).message).toContain(group);
        expect((failure as Error).message).toContain('partition.assignment.strategy');
        // kcat keeps its group, and the bus still works.
        expect((await describe(group, topic)).members).toHaveLength(1);
        const got = collect<unknown>();
        await bus.subscribe(topic, async (m) => got.push(m.payload), { group: uniqueName('g') });
        await bus.publish(topic, { n: 1 });
        expect(await got.waitForCount(1, 20_000)).toEqual([{ n: 1 }]);
      } finally {
        await member.stop();
      }
    },
    60_000,
  );
});

describe.runIf(ok)('kafka group assignment', () => {
  it('one busbar group reading two topics from two buses: each subscription gets its own topic', async () => {
    const options = { url: brokerUrls.kafka, driver, logger: silentLogger, heartbeatIntervalMs: 300 };
    const [a, b] = await Promise.all([connect(options), connect(options)]);
    try {
      const group = uniqueName('g');
      const [first, second] = [uniqueName('two-a'), uniqueName('two-b')];
      const gotA = collect<unknown>();
      const gotB = collect<unknown>();
      await a.subscribe(first, async (m) => gotA.push(m.payload), { group });
      await b.subscribe(second, async (m) => gotB.push(m.payload), { group });
      for (let n = 0; n < 6; n++) {
        await a.publish(first, { n }, { key: `k${n}` });
        await a.publish(second, { n }, { key: `k${n}` });
      }
      await gotA.waitForCount(6, 20_000);
      await gotB.waitForCount(6, 20_000);
    } finally {
      await Promise.all([a.close(), b.close()]);
    }
  }, 60_000);
});
