import type { Consumer, EachBatchPayload, Kafka } from 'kafkajs';
import { subscriptionRoundRobin } from './assigner.js';
import type { KafkaOptions } from './options.js';

export interface NativeHandlers {
  /** Called once the consumer exists, before it connects. */
  readonly onCreated: (consumer: Consumer) => void;
  readonly onJoin: (consumer: Consumer, assignment: Record<string, number[]>) => void;
  readonly onRebalancing: () => void;
  readonly onCrash: (error: Error, restart: boolean) => void;
  /** Fetches, heartbeats and joins: proof that the consumer is alive. */
  readonly onActivity: () => void;
  readonly eachBatch: (consumer: Consumer, payload: EachBatchPayload) => Promise<void>;
}

export interface NativeTopics {
  readonly topic: string;
  readonly fromBeginning: boolean;
  /** Read from the beginning: everything in it is owed to the group. */
  readonly retryTopic: string | undefined;
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
    partitionAssigners: [subscriptionRoundRobin],
    sessionTimeout: o.sessionTimeoutMs,
    rebalanceTimeout: o.rebalanceTimeoutMs,
    heartbeatInterval: o.heartbeatIntervalMs,
    maxWaitTimeInMs: o.maxWaitTimeMs,
    maxBytesPerPartition: Math.max(o.maxMessageBytes + 1024, 1_048_576),
    allowAutoTopicCreation: false,
  });
  handlers.onCreated(c);
  c.on(c.events.GROUP_JOIN, (event) => {
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
    eachBatch: (payload) => handlers.eachBatch(c, payload),
  });
  return c;
}
