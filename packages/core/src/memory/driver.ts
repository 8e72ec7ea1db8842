import { z } from 'zod';
import { recordBytes } from '../dead-letter.js';
import { ClosedError, PayloadTooLargeError, PublishError } from '../errors.js';
import { MAX_TIMER_MS } from '../options.js';
import { SettleOnce } from '../transport/delivery.js';
import type {
  Capabilities,
  LagInfo,
  OutgoingRecord,
  RetryRequest,
  SubscribeCallbacks,
  SubscribeSpec,
  Transport,
  TransportContext,
  TransportSubscription,
} from '../transport/spi.js';
import { type Driver, defineDriver } from '../transport/spi.js';
import { type MemoryBroker, type MemoryConsumer, type MemoryEntry, type MemoryQueue, memoryBroker } from './broker.js';
import { MemoryRequestReply } from './requests.js';

const options = z.object({});

const capabilities: Capabilities = {
  durableGroups: true,
  ordering: true,
  wildcards: true,
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
  readonly requestReply: MemoryRequestReply;
  readonly #broker: MemoryBroker;
  readonly #context: TransportContext<z.output<typeof options>>;
  #closed = false;

  constructor(context: TransportContext<z.output<typeof options>>) {
    this.#context = context;
    this.#broker = memoryBroker(context.url.host + context.url.pathname);
    this.requestReply = new MemoryRequestReply(this.#broker.responders);
  }

  async connect(): Promise<void> {
    this.#context.reportState('memory', 'up');
  }

  async publish(records: readonly OutgoingRecord[]): Promise<void> {
    if (this.#closed) throw new ClosedError('The memory transport is closed');
    // Checked before any is stored, as a broker refuses a whole batch: the limit core checks for users'
    // publishes, enforced here for what core writes itself (dead letters), and refused topics (fault tests).
    for (const record of records) {
      if (this.#broker.refused.has(record.topic)) {
        throw new PublishError(`The memory broker refuses writes to '${record.topic}'`);
      }
      const size = recordBytes(record);
      if (size > this.maxPayloadBytes) throw new PayloadTooLargeError(size, this.maxPayloadBytes, record.topic);
    }
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
        callbacks.onDelivery(new MemoryDelivery(entry, from, consumer));
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

  async close(): Promise<void> {
    this.#closed = true;
    this.requestReply.close();
    this.#context.reportState('memory', 'down');
  }
}

/** A queue entry handed to core; settling it frees a prefetch slot on its consumer. */
class MemoryDelivery extends SettleOnce<MemoryEntry> {
  readonly #queue: MemoryQueue;
  readonly #consumer: MemoryConsumer;

  constructor(entry: MemoryEntry, queue: MemoryQueue, consumer: MemoryConsumer) {
    const { record } = entry;
    super(
      {
        id: record.id,
        topic: record.topic,
        key: record.key,
        headers: entry.headers,
        body: record.body,
        timestamp: record.timestamp,
        contentType: record.contentType,
        attempt: entry.attempt,
      },
      entry,
    );
    this.#queue = queue;
    this.#consumer = consumer;
  }

  protected override settled(): void {
    this.#consumer.unacked--;
    this.#queue.schedule();
  }

  protected ackNative(): undefined {
    return undefined;
  }

  protected async retryNative({ delayMs, attempt, headers }: RetryRequest): Promise<void> {
    const { record } = this.raw;
    // Unref'd: an in-process broker's pending retries must not keep a finished process alive. One ms more: a
    // timer may fire up to 1 ms early by Date.now(), and a delayed message is handled no earlier than its due time.
    setTimeout(() => this.#queue.enqueue({ record, headers, attempt }), Math.min(delayMs + 1, MAX_TIMER_MS)).unref();
  }

  protected releaseNative(): undefined {
    const { record } = this.raw;
    this.#queue.enqueue({ record, headers: this.raw.headers, attempt: this.raw.attempt + 1 }, true);
    return undefined;
  }
}

export const memoryDriver: Driver<typeof options> = defineDriver({
  name: 'memory',
  schemes: ['memory'],
  options,
  create: (context) => new MemoryTransport(context),
});
