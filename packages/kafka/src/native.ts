import type { Consumer, EachBatchPayload, Kafka, PartitionAssigner } from 'kafkajs';
import type { KafkaOptions } from './options.js';

/** How often a replaced consumer that still shows up is told again to leave. */
const RETIRE_AGAIN_MS = 10_000;

/**
 * Consumers the watchdog replaced. Their disconnect can run while kafkajs is restarting them after a crash
 * (the restart timer is set after the crash handler's own disconnect), or hang until the broker is back:
 * such a consumer rejoined the group next to its replacement and held partitions whose batches nobody
 * handled, for good (seen after broker restarts). A retired consumer is never restarted by kafkajs, and
 * one that still joins or fetches is disconnected again.
 */
export class RetiredConsumers {
  readonly #since = new WeakMap<Consumer, number>();

  has(consumer: Consumer): boolean {
    return this.#since.has(consumer);
  }

  retire(consumer: Consumer): void {
    const last = this.#since.get(consumer);
    if (last !== undefined && Date.now() - last < RETIRE_AGAIN_MS) return;
    this.#since.set(consumer, Date.now());
    void consumer.disconnect().catch(() => undefined);
  }
}

export interface NativeHandlers {
  /** Called once the consumer exists, before it connects. */
  readonly onCreated: (consumer: Consumer) => void;
  readonly onJoin: (consumer: Consumer, assignment: Record<string, number[]>) => void;
  readonly onRebalancing: () => void;
  readonly onCrash: (error: Error, restart: boolean) => void;
  /** Fetches, heartbeats and joins: proof that the consumer is alive. */
  readonly onActivity: () => void;
  readonly eachBatch: (consumer: Consumer, payload: EachBatchPayload) => Promise<void>;
  readonly retired: RetiredConsumers;
}

export interface NativeTopics {
  readonly topic: string;
  readonly fromBeginning: boolean;
  /** Read from the beginning: everything in it is owed to the group. */
  readonly retryTopic: string | undefined;
  /** The group's assignment protocols, most preferred first (assigner.ts). */
  readonly assigners: PartitionAssigner[];
}

/** The group timings every busbar kafkajs consumer uses (subscriptions, responders, the requester's replies). */
export function groupTimings(o: KafkaOptions) {
  return {
    sessionTimeout: o.sessionTimeoutMs,
    rebalanceTimeout: o.rebalanceTimeoutMs,
    heartbeatInterval: o.heartbeatIntervalMs,
    maxWaitTimeInMs: o.maxWaitTimeMs,
    allowAutoTopicCreation: false,
  };
}

/** A kafkajs consumer with busbar's settings, connected, subscribed and running (manual commits only). */
export async function startConsumer(
  kafka: Kafka,
  groupId: string,
  o: KafkaOptions,
  topics: NativeTopics,
  handlers: NativeHandlers,
): Promise<Consumer> {
  const c = kafka.consumer({
    groupId,
    partitionAssigners: topics.assigners,
    ...groupTimings(o),
    maxBytesPerPartition: Math.max(o.maxMessageBytes + 1024, 1_048_576),
    // kafkajs' consumer default (5 retries), and no restart after a crash once the consumer was replaced.
    retry: { retries: 5, restartOnFailure: async () => !handlers.retired.has(c) },
  });
  handlers.onCreated(c);
  c.on(c.events.GROUP_JOIN, (event) => {
    if (handlers.retired.has(c)) return handlers.retired.retire(c);
    handlers.onActivity();
    handlers.onJoin(c, event.payload.memberAssignment);
  });
  c.on(c.events.REBALANCING, handlers.onRebalancing);
  c.on(c.events.FETCH_START, handlers.onActivity);
  c.on(c.events.HEARTBEAT, handlers.onActivity);
  c.on(c.events.CRASH, (event) => handlers.onCrash(event.payload.error, event.payload.restart));
  await c.connect();
  await c.subscribe({ topics: [topics.topic], fromBeginning: topics.fromBeginning });
  if (topics.retryTopic) await c.subscribe({ topics: [topics.retryTopic], fromBeginning: true });
  await c.run({
    autoCommit: false,
    eachBatchAutoResolve: false,
    partitionsConsumedConcurrently: 4,
    eachBatch: (payload) => {
      if (!handlers.retired.has(c)) return handlers.eachBatch(c, payload);
      handlers.retired.retire(c);
      return Promise.resolve();
    },
  });
  return c;
}
