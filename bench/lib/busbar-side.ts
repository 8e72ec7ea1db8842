import {
  type BatchEntry,
  type Bus,
  bytesCodec,
  type ConnectOptions,
  connect,
  defineTopic,
  silentLogger,
} from '@busbar/core';
import type { Running, Side, Target } from './types.js';
import { BATCH, CONCURRENCY, PREFETCH, uniqueGroup, uniqueTopic, WINDOW } from './util.js';

export interface BusbarSideOptions {
  readonly connect: ConnectOptions;
  /** Publish window for `publishConcurrent` (in-flight `publish` calls). */
  readonly window?: number;
  /** Deletes the broker objects busbar created for a topic + group. */
  readonly cleanup?: (topic: string, group: string) => Promise<void>;
  /** Whether `fresh()` must create the group first (false: the group is created by the consume test itself). */
  readonly declareGroup?: boolean;
}

/** The busbar side of any broker: the same code on every transport, only the URL and the driver differ. */
export async function busbarSide(label: string, options: BusbarSideOptions): Promise<Side> {
  const bus: Bus = await connect({ logger: silentLogger, ...options.connect });
  const topicOf = (t: Target) => defineTopic<Uint8Array>(t.topic, undefined, { codec: bytesCodec });
  const window = options.window ?? WINDOW;

  return {
    label,
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
      let seen = 0;
      let resolve!: () => void;
      const done = new Promise<void>((r) => {
        resolve = r;
      });
      const sub = await bus.subscribe(
        topicOf(target),
        (message) => {
          onBody(message.payload);
          if (++seen === count) resolve();
        },
        { group: target.group, concurrency: CONCURRENCY, prefetch: PREFETCH, retry: false },
      );
      return { done, close: () => sub.close() };
    },
    close: () => bus.close(),
  };
}
