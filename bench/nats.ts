import { driver } from '@busbar/nats';
import { AckPolicy, type NatsConnection, connect as natsConnect, StorageType } from 'nats';
import { busbarSide } from './lib/busbar-side.js';
import type { BrokerBench, Running, Side } from './lib/types.js';
import { BATCH, PREFETCH, pool, uniqueGroup, uniqueTopic, WINDOW } from './lib/util.js';

const url = process.env.BUSBAR_BENCH_NATS_URL ?? 'nats://127.0.0.1:4222';
const servers = url.replace(/^nats:\/\//, '');

function conn(): Promise<NatsConnection> {
  // noAsyncTraces: 1.8x on JetStream publish (PERFORMANCE.md pitfall 4).
  return natsConnect({ servers, noAsyncTraces: true, name: 'busbar-bench' });
}

const streamOf = (topic: string) => `RAWBENCH_${topic.split('.')[0]}`;

/** Raw nats.js, best practice: async JetStream publishes with many in flight, consume() + ack() (not ackAck). */
async function rawSide(): Promise<Side> {
  const nc = await conn();
  const js = nc.jetstream();
  const jsm = await nc.jetstreamManager();
  return {
    label: 'raw',
    async fresh() {
      const target = { topic: uniqueTopic(), group: uniqueGroup() };
      await jsm.streams.add({ name: streamOf(target.topic), subjects: [target.topic], storage: StorageType.File });
      await jsm.consumers.add(streamOf(target.topic), {
        durable_name: target.group,
        ack_policy: AckPolicy.Explicit,
        // Same as busbar: prefetch = unacked messages the server lets the consumer hold.
        max_ack_pending: PREFETCH,
      });
      return target;
    },
    async drop(target) {
      await jsm.streams.delete(streamOf(target.topic));
    },
    async publishBatch(target, count, payload) {
      for (let sent = 0; sent < count; ) {
        const n = Math.min(BATCH, count - sent);
        const acks: Promise<unknown>[] = new Array(n);
        for (let i = 0; i < n; i++) acks[i] = js.publish(target.topic, payload);
        await Promise.all(acks);
        sent += n;
      }
    },
    async publishConcurrent(target, count, payload) {
      await pool(count, WINDOW, () => js.publish(target.topic, payload));
    },
    async publishOne(target, payload) {
      await js.publish(target.topic, payload);
    },
    async consume(target, count, onBody): Promise<Running> {
      const consumer = await js.consumers.get(streamOf(target.topic), target.group);
      let seen = 0;
      let resolve!: () => void;
      const done = new Promise<void>((r) => {
        resolve = r;
      });
      // Callback mode: no async iterator hop per message (the faster nats.js path).
      const messages = await consumer.consume({
        max_messages: PREFETCH,
        callback: (m) => {
          onBody(m.data);
          m.ack();
          if (++seen === count) resolve();
        },
      });
      return {
        done,
        async close() {
          await nc.flush();
          await messages.close();
        },
      };
    },
    async close() {
      await nc.drain();
    },
  };
}

export const nats: BrokerBench = {
  name: 'nats',
  defaultMessages: 15_000,
  backlog: true,
  async available() {
    try {
      const nc = await natsConnect({ servers, timeout: 2_000, reconnect: false });
      await nc.close();
      return true;
    } catch {
      return false;
    }
  },
  async version() {
    const nc = await conn();
    try {
      return `NATS ${nc.info?.version ?? '?'} (JetStream, file storage)`;
    } finally {
      await nc.close();
    }
  },
  raw: rawSide,
  async busbar() {
    const admin = await conn();
    const jsm = await admin.jetstreamManager();
    const side = await busbarSide('busbar', {
      connect: { url, driver },
      cleanup: async (topic) => {
        await jsm.streams.delete(`BUSBAR_${topic.split('.')[0]}`);
      },
    });
    return {
      ...side,
      close: async () => {
        await side.close();
        await admin.close();
      },
    };
  },
};
