import { z } from 'zod';
import { ClosedError } from '../errors.js';
import type {
  Capabilities,
  Delivery,
  LagInfo,
  OutgoingRecord,
  SubscribeCallbacks,
  SubscribeSpec,
  Transport,
  TransportContext,
  TransportSubscription,
} from '../transport/spi.js';
import { type Driver, defineDriver } from '../transport/spi.js';
import { type MemoryBroker, type MemoryConsumer, type MemoryEntry, type MemoryQueue, memoryBroker } from './broker.js';

const options = z.object({});

const capabilities: Capabilities = {
  durableGroups: true,
  persistent: false,
  ordering: true,
  wildcards: true,
  nativeDelay: true,
  replay: false,
};

/**
 * `memory://[name]`: an in-process broker with the semantics of a durable
 * one (groups keep messages while no member is attached, acks, delays,
 * redelivery), shared by every bus connected to the same name in this process.
 * Nothing survives the process.
 */
class MemoryTransport implements Transport {
  readonly capabilities = capabilities;
  readonly maxPayloadBytes = 16 * 1024 * 1024;
  readonly #broker: MemoryBroker;
  readonly #context: TransportContext<z.output<typeof options>>;
  #closed = false;

  constructor(context: TransportContext<z.output<typeof options>>) {
    this.#context = context;
    this.#broker = memoryBroker(context.url.host + context.url.pathname);
  }

  async connect(): Promise<void> {
    this.#context.reportState('memory', 'up');
  }

  async publish(records: readonly OutgoingRecord[]): Promise<void> {
    if (this.#closed) throw new ClosedError('The memory transport is closed');
    for (const record of records) this.#broker.publish(record);
  }

  async declareGroup(topic: string, group: string): Promise<void> {
    this.#broker.queue(topic, group);
  }

  async lag(topic: string, group: string): Promise<LagInfo | undefined> {
    const queue = this.#broker.existing(topic, group);
    return queue ? { lag: queue.depth, pending: queue.unacked } : undefined;
  }

  async subscribe(spec: SubscribeSpec, callbacks: SubscribeCallbacks): Promise<TransportSubscription> {
    const broadcast = spec.group === undefined ? this.#broker.addBroadcast(spec.topic) : undefined;
    const queue = broadcast ? broadcast.queue : this.#broker.queue(spec.topic, spec.group as string);
    let active = true;
    const consumer: MemoryConsumer = {
      prefetch: spec.prefetch,
      unacked: 0,
      deliver: (entry, from) => {
        if (!active) {
          consumer.unacked--;
          from.enqueue(entry, true);
          return;
        }
        callbacks.onDelivery(this.#delivery(entry, from, consumer));
      },
    };
    queue.addConsumer(consumer);
    return {
      stop: async () => {
        active = false;
        queue.removeConsumer(consumer);
      },
      close: async () => {
        if (broadcast) this.#broker.removeBroadcast(broadcast);
      },
    };
  }

  #delivery(entry: MemoryEntry, queue: MemoryQueue, consumer: MemoryConsumer): Delivery {
    let settled = false;
    const settle = (): boolean => {
      if (settled) return false;
      settled = true;
      consumer.unacked--;
      queue.schedule();
      return true;
    };
    const { record } = entry;
    return {
      id: record.id,
      topic: record.topic,
      key: record.key,
      headers: entry.headers,
      body: record.body,
      timestamp: record.timestamp,
      attempt: entry.attempt,
      raw: entry,
      ack: async () => {
        settle();
      },
      retry: async ({ delayMs, attempt, headers }) => {
        if (!settle()) return;
        // Unref'd: an in-process broker's pending retries must not keep a finished process alive.
        setTimeout(() => queue.enqueue({ record, headers, attempt }), delayMs).unref();
      },
      release: async () => {
        if (!settle()) return;
        queue.enqueue({ record, headers: entry.headers, attempt: entry.attempt + 1 }, true);
      },
    };
  }

  async close(): Promise<void> {
    this.#closed = true;
    this.#context.reportState('memory', 'down');
  }
}

export const memoryDriver: Driver<typeof options> = defineDriver({
  name: 'memory',
  schemes: ['memory'],
  options,
  create: (context) => new MemoryTransport(context),
});
