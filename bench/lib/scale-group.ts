/**
 * Scale (a): one consumer group drained by N member processes. A backlog is published first (MQTT: during
 * the drain, its groups keep no backlog without sessions that existed before), then N children subscribe at
 * the same moment; the time runs from the first delivery in any child to the last message handled in any.
 */
import { bytesCodec, connect, defineTopic, silentLogger } from '@busbar/core';
import { cleanup, connectOptions, RUN, type ScaleBroker } from './scale-brokers.js';
import { Member, type MemberReport } from './scale-ipc.js';
import { publishBacklog } from './scale-publish.js';
import { deadline, sleep } from './util.js';

export interface GroupResult {
  readonly broker: ScaleBroker;
  readonly processes: number;
  readonly messages: number;
  /** Messages handled over all members per second, first delivery to last. */
  readonly rate: number;
  /** Messages handled by each member. */
  readonly shares: readonly number[];
  /** Client CPU per message, summed over the members, us. */
  readonly cpuUs: number;
  /** Deliveries beyond `messages` (a redelivery during a rebalance). */
  readonly extra: number;
  readonly error?: string;
}

/** A drain that makes no progress for this long failed (a member got nothing it was owed). */
const STALL_MS = 30_000;

async function waitFor(members: readonly Member[], messages: number): Promise<void> {
  let last = 0;
  let since = Date.now();
  for (;;) {
    const seen = members.reduce((sum, m) => sum + m.seen, 0);
    if (seen >= messages) return;
    if (seen !== last) {
      last = seen;
      since = Date.now();
    } else if (Date.now() - since > STALL_MS) {
      throw new Error(`stalled at ${seen} of ${messages} (per member ${members.map((m) => m.seen).join(', ')})`);
    }
    await sleep(50);
  }
}

export async function runGroup(
  broker: ScaleBroker,
  url: string,
  processes: number,
  messages: number,
  payload: Buffer,
  distDir: string,
): Promise<GroupResult> {
  const topicName = `${RUN}g${processes}.t`;
  const group = `${RUN}g${processes}`;
  const topic = defineTopic<Uint8Array>(topicName, undefined, { codec: bytesCodec });
  const bus = await connect({ logger: silentLogger, ...connectOptions(broker, url, `${RUN}p`) });
  const members: Member[] = [];
  const base = { broker, processes, messages };
  try {
    const live = broker !== 'mqtt';
    if (live) {
      // The group exists once subscribed; closing keeps it (Kafka: committed at the end offsets) for the backlog.
      const sub = await bus.subscribe(topic, () => undefined, { group });
      await sub.close();
      const t0 = Date.now();
      await publishBacklog(bus, topic, messages, payload);
      console.log(`   ${processes} process(es): backlog of ${messages} published in ${Date.now() - t0} ms`);
    }
    for (let i = 0; i < processes; i++) {
      members.push(new Member(distDir, { broker, url, topic: topicName, group, member: `${RUN}m${i}` }));
    }
    await Promise.all(members.map((m) => m.next('ready')));
    // Subscribed together: no member drains a head start while the others are still starting Node.
    const subscribed = Promise.all(members.map((m) => m.next('subscribed')));
    for (const m of members) m.send({ type: 'go' });
    await deadline(subscribed, 60_000, 'subscribing the members');
    const publishing = live ? undefined : publishBacklog(bus, topic, messages, payload);
    await Promise.all([waitFor(members, messages), publishing]);
    const reports: MemberReport[] = [];
    for (const m of members) reports.push(await m.stop());
    const first = Math.min(...reports.filter((r) => r.seen > 0).map((r) => r.firstAt));
    const last = Math.max(...reports.map((r) => r.lastAt));
    const seen = reports.reduce((sum, r) => sum + r.seen, 0);
    const cpuMs = reports.reduce((sum, r) => sum + r.cpuMs, 0);
    return {
      ...base,
      rate: (seen / (last - first)) * 1000,
      shares: reports.map((r) => r.seen),
      cpuUs: (cpuMs * 1000) / seen,
      extra: seen - messages,
    };
  } catch (error) {
    return { ...base, rate: 0, shares: [], cpuUs: 0, extra: 0, error: String((error as Error).message ?? error) };
  } finally {
    for (const m of members) m.kill();
    await bus.close().catch(() => undefined);
    await cleanup(broker, url, topicName, [topicName], [group]).catch((e: unknown) => {
      console.log(`   cleanup failed: ${String(e)}`);
    });
  }
}
