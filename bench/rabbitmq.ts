import { driver } from '@busbar/rabbitmq';
import amqplib, { type ChannelModel, type ConfirmChannel, type ConsumeMessage } from 'amqplib';
import { busbarSide } from './lib/busbar-side.js';
import type { BrokerBench, Running, Side } from './lib/types.js';
import { BATCH, PREFETCH, pool, uniqueGroup, uniqueTopic, WINDOW } from './lib/util.js';

const url = process.env.BUSBAR_BENCH_RABBITMQ_URL ?? 'amqp://guest:guest@127.0.0.1:5672';
const EXCHANGE = 'busbar-rawbench';
/** Acks are sent with `multiple` every this many messages (PERFORMANCE.md: +30-50%). */
const ACK_EVERY = 100;

/** Both sides use quorum queues (busbar's default group queue type) and persistent messages. */
const queueOf = (topic: string, group: string) => `${topic}.${group}`;

async function withChannel<T>(fn: (ch: amqplib.Channel) => Promise<T>): Promise<T> {
  const conn = await amqplib.connect(url);
  try {
    const ch = await conn.createChannel();
    return await fn(ch);
  } finally {
    await conn.close().catch(() => undefined);
  }
}

/** Publishes one persistent message; resolves on its confirm. Waits for `drain` when the socket buffer is full. */
function confirmed(
  ch: ConfirmChannel,
  routingKey: string,
  body: Buffer,
  state: { drain?: Promise<void> },
): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    const ok = ch.publish(EXCHANGE, routingKey, body, { deliveryMode: 2 }, (err) => (err ? reject(err) : resolve()));
    if (!ok && !state.drain) {
      state.drain = new Promise<void>((r) =>
        ch.once('drain', () => {
          state.drain = undefined;
          r();
        }),
      );
    }
  });
}

/** Raw amqplib, best practice: confirm channel with ~1000 in flight, prefetch, ack multiple every 100. */
async function rawSide(): Promise<Side> {
  // Same socket option as the busbar driver (Nagle off), or small publishes wait for delayed ACKs.
  const conn: ChannelModel = await amqplib.connect(url, { noDelay: true });
  const ch = await conn.createConfirmChannel();
  await ch.assertExchange(EXCHANGE, 'topic', { durable: true });
  const state: { drain?: Promise<void> } = {};
  const publish = async (rk: string, body: Buffer) => {
    if (state.drain) await state.drain;
    await confirmed(ch, rk, body, state);
  };
  return {
    label: 'raw',
    async fresh() {
      const target = { topic: uniqueTopic(), group: uniqueGroup() };
      const q = queueOf(target.topic, target.group);
      await ch.assertQueue(q, { durable: true, arguments: { 'x-queue-type': 'quorum' } });
      await ch.bindQueue(q, EXCHANGE, target.topic);
      return target;
    },
    async drop(target) {
      await ch.deleteQueue(queueOf(target.topic, target.group));
    },
    async publishBatch(target, count, payload) {
      for (let sent = 0; sent < count; ) {
        const n = Math.min(BATCH, count - sent);
        for (let i = 0; i < n; i++) {
          if (state.drain) await state.drain;
          const ok = ch.publish(EXCHANGE, target.topic, payload, { deliveryMode: 2 });
          if (!ok && !state.drain) {
            state.drain = new Promise<void>((r) =>
              ch.once('drain', () => {
                state.drain = undefined;
                r();
              }),
            );
          }
        }
        await ch.waitForConfirms();
        sent += n;
      }
    },
    async publishConcurrent(target, count, payload) {
      await pool(count, WINDOW, () => publish(target.topic, payload));
    },
    async publishOne(target, payload) {
      await publish(target.topic, payload);
    },
    async consume(target, count, onBody): Promise<Running> {
      const cch = await conn.createChannel();
      await cch.prefetch(PREFETCH);
      let seen = 0;
      let unacked = 0;
      let last: ConsumeMessage | undefined;
      let resolve!: () => void;
      const done = new Promise<void>((r) => {
        resolve = r;
      });
      const { consumerTag } = await cch.consume(queueOf(target.topic, target.group), (msg) => {
        if (!msg) return;
        onBody(msg.content);
        last = msg;
        if (++unacked >= ACK_EVERY || seen + 1 >= count) {
          cch.ack(msg, true);
          unacked = 0;
        }
        if (++seen === count) resolve();
      });
      return {
        done,
        async close() {
          await cch.cancel(consumerTag);
          if (unacked > 0 && last) cch.ack(last, true);
          await cch.close();
        },
      };
    },
    async close() {
      await conn.close();
    },
  };
}

export const rabbitmq: BrokerBench = {
  name: 'rabbitmq',
  defaultMessages: 10_000,
  backlog: true,
  async available() {
    try {
      await withChannel(async () => undefined);
      return true;
    } catch {
      return false;
    }
  },
  async version() {
    const conn = await amqplib.connect(url);
    try {
      const props = (conn.connection as unknown as { serverProperties?: Record<string, unknown> }).serverProperties;
      return `RabbitMQ ${String(props?.version ?? '?')} (quorum queues, persistent, confirms)`;
    } finally {
      await conn.close();
    }
  },
  raw: rawSide,
  async busbar() {
    const admin = await amqplib.connect(url);
    const ch = await admin.createChannel();
    const side = await busbarSide('busbar', {
      connect: { url, driver },
      cleanup: async (topic, group) => {
        await ch.deleteQueue(queueOf(topic, group));
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
