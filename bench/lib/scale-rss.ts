/**
 * Scale (c): the MQTT row of the backlog memory test. An MQTT group keeps a backlog only in its members'
 * persistent sessions, so the member subscribes once (clean start off, session expiry 600 s) and disconnects,
 * the backlog is published into its session queue (a private Mosquitto with unlimited queues), and a fresh
 * process resuming that session (same client id) drains it while its RSS is sampled, as `lib/rss.ts` does.
 */
import { bytesCodec, connect, defineTopic, silentLogger } from '@busbar/core';
import type { RssResult } from './report.js';
import { connectOptions, RUN } from './scale-brokers.js';
import { Member } from './scale-ipc.js';
import type { Mosquitto } from './scale-mosquitto.js';
import { publishBacklog } from './scale-publish.js';
import { sleep } from './util.js';

/** Resolves when the member has handled `count`, or rejects after 30 s without progress. */
async function drained(member: Member, count: number): Promise<void> {
  let last = -1;
  let since = Date.now();
  while (member.seen < count) {
    if (member.seen !== last) {
      last = member.seen;
      since = Date.now();
    } else if (Date.now() - since > 30_000) {
      throw new Error(`stalled at ${member.seen} of ${count}: the broker kept less than the backlog`);
    }
    await sleep(50);
  }
}

export async function runMqttRss(
  mosquitto: Mosquitto,
  messages: number,
  payload: Buffer,
  distDir: string,
): Promise<RssResult> {
  const url = mosquitto.url;
  const topicName = `${RUN}r.t`;
  const group = `${RUN}r`;
  const spec = { broker: 'mqtt', url, topic: topicName, group, member: `${RUN}r` } as const;
  const base = { transport: 'mqtt', backlog: messages };
  // The group's one member: subscribed, then gone with its session (and the shared subscription in it) kept.
  const first = new Member(distDir, spec);
  await first.next('ready');
  first.send({ type: 'go' });
  await first.next('subscribed');
  await first.stop();

  const bus = await connect({ logger: silentLogger, ...connectOptions('mqtt', url, `${RUN}p`) });
  const topic = defineTopic<Uint8Array>(topicName, undefined, { codec: bytesCodec });
  const brokerMb = mosquitto.rssMb();
  const t0 = Date.now();
  await publishBacklog(bus, topic, messages, payload);
  await bus.close();
  const held = `Mosquitto RSS ${brokerMb} -> ${mosquitto.rssMb()} MB`;
  console.log(`   backlog of ${messages} published in ${Date.now() - t0} ms (${held}); draining in a child process`);

  const member = new Member(distDir, { ...spec, expect: messages });
  try {
    await member.next('ready');
    member.send({ type: 'go' });
    await member.next('subscribed');
    await drained(member, messages);
    const r = await member.stop();
    return {
      ...base,
      drainRate: (r.seen / (r.lastAt - r.firstAt)) * 1000,
      baselineRssMb: r.baselineMb,
      peakRssMb: r.peakMb,
      atMb: r.atMb,
      liveMb: r.liveMb,
    };
  } catch (error) {
    const seen = member.seen;
    return { ...base, drainRate: 0, baselineRssMb: 0, peakRssMb: 0, error: `${String(error)} (seen ${seen})` };
  } finally {
    member.kill();
  }
}
