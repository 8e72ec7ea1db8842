import { driver } from '@busbar/rabbitmq';
import amqplib, { type ChannelModel, type ConfirmChannel, type ConsumeMessage } from 'amqplib';
import { Batches } from './lib/batches.js';
import { busbarSide } from './lib/busbar-side.js';
import { PendingReplies } from './lib/replies.js';
import type { BrokerBench, RequestReplySide, Running, Side, Target } from './lib/types.js';
import {
  BATCH,
  Countdown,
  PREFETCH,
  pool,
  REPLY_BYTES,
  REQUEST_PREFETCH,
  uniqueGroup,
  uniqueTopic,
  WINDOW,
} from './lib/util.js';

const url = process.env.BUSBAR_BENCH_RABBITMQ_URL ?? 'amqp://guest:guest@127.0.0.1:5672';
const EXCHANGE = 'busbar-rawbench';
/**
 * Acks are sent with `multiple` every this many messages (PERFORMANCE.md: +30-50%), and what is left at the end
 * of the event-loop turn: a consumer that waited for the 100th would leave the last messages before a pause
 * unacked, holding prefetch slots and redelivered after a crash (busbar's consumer acks the same way).
 */
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

const REPLY_TO = 'amq.rabbitmq.reply-to';
const rpcQueueOf = (target: Target) => `rawrpc.${target.topic}.${target.group}`;

/**
 * The RabbitMQ tutorials' RPC (direct reply-to + correlation_id), with many requests in flight on one channel:
 * the requester's channel consumes `amq.rabbitmq.reply-to` (no-ack) and publishes every request with
 * `replyTo` and a correlation id, replies matched in a map; the responder consumes the request queue with a
 * prefetch, replies with `sendToQueue(replyTo, ..., { correlationId })` and acks. Requests are transient, as
 * busbar's are; each has a timeout, as busbar's do.
 */
async function rawRequestReply(conn: ChannelModel, responderConn: ChannelModel): Promise<RequestReplySide> {
  const requests = await conn.createChannel();
  const pending = new PendingReplies();
  await requests.consume(
    REPLY_TO,
    (msg) => {
      const id: unknown = msg?.properties.correlationId;
      if (typeof id === 'string' && msg) pending.settle(id, msg.content);
    },
    { noAck: true },
  );
  return {
    fresh: async () => ({ topic: uniqueTopic(), group: uniqueGroup() }),
    drop: async () => undefined,
    async serve(target) {
      const ch = await responderConn.createChannel();
      const queue = rpcQueueOf(target);
      await ch.assertQueue(queue, { durable: false });
      await ch.prefetch(REQUEST_PREFETCH);
      const { consumerTag } = await ch.consume(queue, (msg) => {
        if (!msg) return;
        ch.sendToQueue(msg.properties.replyTo as string, REPLY_BYTES, { correlationId: msg.properties.correlationId });
        ch.ack(msg);
      });
      return {
        async close() {
          await ch.cancel(consumerTag);
          await ch.deleteQueue(queue);
          await ch.close();
        },
      };
    },
    request: (target, payload) =>
      pending.request((id) => {
        requests.sendToQueue(rpcQueueOf(target), payload, { correlationId: id, replyTo: REPLY_TO });
      }),
  };
}

/**
 * Raw amqplib, best practice: confirm channel with ~1000 in flight, consumers on their own connection, prefetch,
 * ack multiple every 100 and at the end of the turn.
 */
async function rawSide(): Promise<Side> {
  // Same socket option as the busbar driver (Nagle off), or small publishes wait for delayed ACKs.
  const conn: ChannelModel = await amqplib.connect(url, { noDelay: true });
  // Consumers on a connection of their own, as RabbitMQ advises (flow control blocks a publishing connection)
  // and as busbar's driver does; a responder is a consumer (in a service of its own, in real life).
  const consumerConn: ChannelModel = await amqplib.connect(url, { noDelay: true });
  const ch = await conn.createConfirmChannel();
  await ch.assertExchange(EXCHANGE, 'topic', { durable: true });
  const state: { drain?: Promise<void> } = {};
  const publish = async (rk: string, body: Buffer) => {
    if (state.drain) await state.drain;
    await confirmed(ch, rk, body, state);
  };
  const requestReply = await rawRequestReply(conn, consumerConn);
  return {
    label: 'raw',
    requestReply,
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
      const cch = await consumerConn.createChannel();
      await cch.prefetch(PREFETCH);
      const handled = new Countdown(count);
      let unacked = 0;
      let last: ConsumeMessage | undefined;
      const flush = () => {
        if (unacked > 0 && last) cch.ack(last, true);
        unacked = 0;
      };
      const { consumerTag } = await cch.consume(queueOf(target.topic, target.group), (msg) => {
        if (!msg) return;
        onBody(msg.content);
        last = msg;
        if (++unacked >= ACK_EVERY) flush();
        else if (unacked === 1) setImmediate(flush);
        handled.add();
      });
      return {
        done: handled.done,
        async close() {
          await cch.cancel(consumerTag);
          flush();
          await cch.close();
        },
      };
    },
    async consumeBatch(target, count, batch, onBatch): Promise<Running> {
      const cch = await consumerConn.createChannel();
      await cch.prefetch(PREFETCH);
      const handled = new Countdown(count);
      // Each batch acked with one ack(last, true).
      const batches = new Batches<ConsumeMessage>(batch, (messages) => {
        onBatch(messages.map((m) => m.content));
        cch.ack(messages[messages.length - 1] as ConsumeMessage, true);
        handled.add(messages.length);
      });
      const { consumerTag } = await cch.consume(queueOf(target.topic, target.group), (msg) => {
        if (msg) batches.push(msg);
      });
      return {
        done: handled.done,
        async close() {
          await cch.cancel(consumerTag);
          batches.flush();
          await cch.close();
        },
      };
    },
    async close() {
      await conn.close();
      await consumerConn.close();
    },
  };
}

export const rabbitmq: BrokerBench = {
  name: 'rabbitmq',
  defaultMessages: 10_000,
  requestMessages: 5_000,
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
