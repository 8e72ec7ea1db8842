import {
  type BatchEntry,
  type Bus,
  bytesCodec,
  type ConnectOptions,
  connect,
  defineTopic,
  silentLogger,
  type Topic,
} from '@busbar/core';
import type { RequestReplySide, Running, Side, Target } from './types.js';
import {
  BATCH,
  CONCURRENCY,
  Countdown,
  PREFETCH,
  REPLY,
  REQUEST_TIMEOUT_MS,
  REQUEST_WINDOW,
  uniqueGroup,
  uniqueTopic,
  WINDOW,
} from './util.js';

export interface BusbarSideOptions {
  readonly connect: ConnectOptions;
  /** Publish window for `publishConcurrent` (in-flight `publish` calls). */
  readonly window?: number;
  /** Deletes the broker objects busbar created for a topic + group. */
  readonly cleanup?: (topic: string, group: string) => Promise<void>;
  /** Whether `fresh()` must create the group first (false: the group is created by the consume test itself). */
  readonly declareGroup?: boolean;
  /** Deletes what a responder and its requests left for a request topic (Redis: the request stream). */
  readonly requestCleanup?: (topic: string, group: string) => Promise<void>;
}

/**
 * `bus.respond` + `bus.request`, request payload with the bytes codec (as the raw sides send bytes); the reply
 * is JSON, as every busbar reply is. One topic object per request topic, as an application defines it once.
 */
function requestReplySide(bus: Bus, options: BusbarSideOptions): RequestReplySide {
  const topics = new Map<string, Topic<Uint8Array, string>>();
  const topicOf = (t: Target) => {
    let def = topics.get(t.topic);
    if (!def) {
      def = defineTopic<Uint8Array, string>(t.topic, undefined, { codec: bytesCodec });
      topics.set(t.topic, def);
    }
    return def;
  };
  return {
    fresh: async () => ({ topic: uniqueTopic(), group: uniqueGroup() }),
    async drop(target) {
      topics.delete(target.topic);
      await options.requestCleanup?.(target.topic, target.group);
    },
    async serve(target) {
      const sub = await bus.respond(topicOf(target), () => REPLY, {
        group: target.group,
        concurrency: REQUEST_WINDOW,
      });
      return { close: () => sub.close() };
    },
    request: (target, payload) => bus.request(topicOf(target), payload, { timeoutMs: REQUEST_TIMEOUT_MS }),
  };
}

/** The busbar side of any broker: the same code on every transport, only the URL and the driver differ. */
export async function busbarSide(label: string, options: BusbarSideOptions): Promise<Side> {
  const bus: Bus = await connect({ logger: silentLogger, ...options.connect });
  // One topic object per block, as a service defines its topics once: the latency test publishes one message
  // per call, and a defineTopic per call (name check and all) was 2.2 us of each message's CPU on RabbitMQ.
  const topics = new Map<string, Topic<Uint8Array>>();
  const topicOf = (t: Target): Topic<Uint8Array> => {
    let topic = topics.get(t.topic);
    if (topic === undefined) {
      topic = defineTopic<Uint8Array>(t.topic, undefined, { codec: bytesCodec });
      topics.set(t.topic, topic);
    }
    return topic;
  };
  const window = options.window ?? WINDOW;
  const requestReply = bus.capabilities.requestReply ? requestReplySide(bus, options) : undefined;

  return {
    label,
    ...(requestReply ? { requestReply } : {}),
    async fresh() {
      const target = { topic: uniqueTopic(), group: uniqueGroup() };
      if (options.declareGroup !== false) {
        // A group exists once it has been subscribed; closing keeps it (durable) for the backlog.
        const sub = await bus.subscribe(topicOf(target), () => undefined, { group: target.group });
        await sub.close();
      }
      return target;
    },
    async drop(target) {
      topics.delete(target.topic);
      await options.cleanup?.(target.topic, target.group);
    },
    async publishBatch(target, count, payload) {
      const topic = topicOf(target);
      for (let sent = 0; sent < count; ) {
        const n = Math.min(BATCH, count - sent);
        const entries: BatchEntry<Uint8Array>[] = new Array(n);
        for (let i = 0; i < n; i++) entries[i] = { payload };
        await bus.publishBatch(topic, entries);
        sent += n;
      }
    },
    async publishConcurrent(target, count, payload) {
      const topic = topicOf(target);
      let next = 0;
      const worker = async () => {
        while (next < count) {
          next++;
          await bus.publish(topic, payload);
        }
      };
      await Promise.all(Array.from({ length: Math.min(window, count) }, worker));
    },
    async publishOne(target, payload) {
      await bus.publish(topicOf(target), payload);
    },
    async consume(target, count, onBody): Promise<Running> {
      const handled = new Countdown(count);
      const sub = await bus.subscribe(
        topicOf(target),
        (message) => {
          onBody(message.payload);
          handled.add();
        },
        { group: target.group, concurrency: CONCURRENCY, prefetch: PREFETCH, retry: false },
      );
      return { done: handled.done, close: () => sub.close() };
    },
    async consumeBatch(target, count, batch, onBatch): Promise<Running> {
      const handled = new Countdown(count);
      const sub = await bus.subscribeBatch(
        topicOf(target),
        (messages) => {
          onBatch(messages.map((m) => m.payload));
          handled.add(messages.length);
        },
        { group: target.group, batch, prefetch: PREFETCH, retry: false },
      );
      return { done: handled.done, close: () => sub.close() };
    },
    close: () => bus.close(),
  };
}
