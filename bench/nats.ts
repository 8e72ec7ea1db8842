import { driver } from '@busbar/nats';
import {
  AckPolicy,
  createInbox,
  type JsMsg,
  type Msg,
  type NatsConnection,
  connect as natsConnect,
  StorageType,
} from 'nats';
import { Batches } from './lib/batches.js';
import { busbarSide } from './lib/busbar-side.js';
import type { BrokerBench, RequestReplySide, Running, Side } from './lib/types.js';
import {
  BATCH,
  Countdown,
  PREFETCH,
  pool,
  REPLY_BYTES,
  REQUEST_TIMEOUT_MS,
  uniqueGroup,
  uniqueTopic,
  WINDOW,
} from './lib/util.js';

const url = process.env.BUSBAR_BENCH_NATS_URL ?? 'nats://127.0.0.1:4222';
const servers = url.replace(/^nats:\/\//, '');

function conn(): Promise<NatsConnection> {
  // noAsyncTraces: 1.8x on JetStream publish (PERFORMANCE.md pitfall 4).
  return natsConnect({ servers, noAsyncTraces: true, name: 'busbar-bench' });
}

const streamOf = (topic: string) => `RAWBENCH_${topic.split('.')[0]}`;

/** `{"stream":`: how every successful PubAck starts, so a good ack needs no JSON parse. */
const PUBACK_OK = Buffer.from('{"stream":');

/**
 * What nats.go's `PublishAsync` does, written by hand for nats.js (which has no such API): JetStream publishes
 * as core messages with a reply subject under ONE wildcard inbox subscription, each settled by its PubAck,
 * instead of `js.publish`'s request (inbox entry, timer and promise chain) per message. The bound on a lost
 * PubAck is the bench's block deadline.
 */
function asyncPublisher(nc: NatsConnection): (subject: string, data: Uint8Array) => Promise<void> {
  const prefix = `${createInbox()}.`;
  const pending = new Map<string, { resolve(): void; reject(error: Error): void }>();
  let seq = 0;
  nc.subscribe(`${prefix}*`, {
    callback: (_error, msg: Msg) => {
      const token = msg.subject.slice(prefix.length);
      const waiter = pending.get(token);
      if (!waiter) return;
      pending.delete(token);
      const data = msg.data;
      if (data.length >= PUBACK_OK.length && PUBACK_OK.equals(data.subarray(0, PUBACK_OK.length))) waiter.resolve();
      // An error PubAck, or a 503 no-responders status (no stream captures the subject).
      else waiter.reject(new Error(`publish refused: ${Buffer.from(data).toString() || (msg.headers?.code ?? '?')}`));
    },
  });
  return (subject, data) =>
    new Promise<void>((resolve, reject) => {
      const token = (seq++).toString(36);
      pending.set(token, { resolve, reject });
      nc.publish(subject, data, { reply: `${prefix}${token}` });
    });
}

/** Core NATS request/reply as nats.js documents it: `nc.request` (muxed inbox), a queue-group subscription answering with `msg.respond`. */
function rawRequestReply(nc: NatsConnection): RequestReplySide {
  return {
    fresh: async () => ({ topic: uniqueTopic(), group: uniqueGroup() }),
    drop: async () => undefined,
    async serve(target) {
      const sub = nc.subscribe(target.topic, {
        queue: target.group,
        callback: (_error, msg) => {
          msg.respond(REPLY_BYTES);
        },
      });
      // The server has the subscription once a PING after it is answered.
      await nc.flush();
      return {
        async close() {
          sub.unsubscribe();
          await nc.flush();
        },
      };
    },
    async request(target, payload) {
      const reply = await nc.request(target.topic, payload, { timeout: REQUEST_TIMEOUT_MS });
      return reply.json<string>();
    },
  };
}

/**
 * Raw nats.js, best practice: async JetStream publishes in a sliding window of WINDOW in flight (the same
 * window as busbar's concurrent publishes; NATS has no batch API, so "publishBatch" is BATCH publishes at once,
 * awaited together),
 * consume() + ack() (not ackAck). `mode: 'pipelined'` publishes through `asyncPublisher` instead of js.publish.
 */
async function rawSide(mode: 'js.publish' | 'pipelined' = 'js.publish'): Promise<Side> {
  const nc = await conn();
  const js = nc.jetstream();
  const jsm = await nc.jetstreamManager();
  const publish =
    mode === 'pipelined'
      ? asyncPublisher(nc)
      : async (subject: string, data: Uint8Array) => {
          await js.publish(subject, data);
        };
  return {
    label: mode === 'pipelined' ? 'pipelined' : 'raw',
    ...(mode === 'js.publish' ? { requestReply: rawRequestReply(nc) } : {}),
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
      // NATS has no batch: a batch is BATCH publishes issued at once and awaited together, as on the other
      // brokers and on busbar's side (a sliding window over all messages never waits for a batch's last PubAck).
      for (let sent = 0; sent < count; sent += BATCH) {
        const n = Math.min(BATCH, count - sent);
        await pool(n, WINDOW, () => publish(target.topic, payload));
      }
    },
    async publishConcurrent(target, count, payload) {
      await pool(count, WINDOW, () => publish(target.topic, payload));
    },
    async publishOne(target, payload) {
      await publish(target.topic, payload);
    },
    async consume(target, count, onBody): Promise<Running> {
      const consumer = await js.consumers.get(streamOf(target.topic), target.group);
      const handled = new Countdown(count);
      // Callback mode: no async iterator hop per message (the faster nats.js path).
      const messages = await consumer.consume({
        max_messages: PREFETCH,
        callback: (m) => {
          onBody(m.data);
          m.ack();
          handled.add();
        },
      });
      return {
        done: handled.done,
        async close() {
          await nc.flush();
          await messages.close();
        },
      };
    },
    // JetStream acks one message at a time (AckPolicy.All would ack a prefix, but busbar's consumers are
    // Explicit, as this one): a batch is the messages consume() delivered, each acked after the batch.
    async consumeBatch(target, count, batch, onBatch): Promise<Running> {
      const consumer = await js.consumers.get(streamOf(target.topic), target.group);
      const handled = new Countdown(count);
      const batches = new Batches<JsMsg>(batch, (delivered) => {
        onBatch(delivered.map((m) => m.data));
        for (const m of delivered) m.ack();
        handled.add(delivered.length);
      });
      const messages = await consumer.consume({ max_messages: PREFETCH, callback: (m) => batches.push(m) });
      return {
        done: handled.done,
        async close() {
          batches.flush();
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
  requestMessages: 10_000,
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
  raw: () => rawSide(),
  // The hand-written PublishAsync: how far js.publish itself is from what nats.js can do.
  references: async () => [{ side: await rawSide('pipelined'), scenarios: ['publishBatch', 'publishConcurrent'] }],
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
