import { createHash } from 'node:crypto';
import type { NativeOperation } from '@busbar/core/transport';
import { DEAD_LETTER_READER_GROUP } from '@busbar/core/transport';
import type { Admin } from 'kafkajs';
import { errorType, rootCause, toBusbarError } from './errors.js';

const MAX_TOPIC = 249;

/**
 * Retries an admin call through the short windows after a topic is created or
 * a broker restarts, when the broker still answers NOT_LEADER, LEADER_NOT_AVAILABLE
 * or "coordinator loading" (kafkajs' admin gives up at once on some of them).
 */
export async function retrying<T>(call: () => Promise<T>, budgetMs = 10_000): Promise<T> {
  const deadline = Date.now() + budgetMs;
  for (let wait = 50; ; wait = Math.min(wait * 2, 1_000)) {
    try {
      return await call();
    } catch (error) {
      // kafkajs' fetchTopicOffsets can also die with a TypeError ("low.pop() is undefined") when the broker's
      // metadata for a just-created topic is not complete yet: the same window, so it is retried too.
      const transient = rootCause(error).retriable === true || error instanceof TypeError;
      if (!transient || Date.now() + wait > deadline) throw error;
      await new Promise((resolve) => setTimeout(resolve, wait));
    }
  }
}

const LEGAL_TOPIC = /^[A-Za-z0-9._-]{1,249}$/;

/** What Kafka takes as a topic name: [a-zA-Z0-9._-], at most 249 characters, not '.' or '..'. */
export function isLegalTopic(topic: string): boolean {
  return LEGAL_TOPIC.test(topic) && topic !== '.' && topic !== '..';
}

/** `<topic>.<group>.retry`: one retry topic per group, so a retry reaches only the group that failed. */
export function retryTopicFor(topic: string, group: string): string {
  const name = `${topic}.${group}.retry`;
  if (name.length <= MAX_TOPIC) return name;
  // Too long for Kafka: keep a readable prefix and make it unique with a hash.
  const hash = createHash('sha256').update(name).digest('hex').slice(0, 16);
  return `${name.slice(0, MAX_TOPIC - 23)}.${hash}.retry`;
}

/**
 * The Kafka consumer group behind a busbar group. Dead-letter readers (one
 * busbar group for every dead-letter topic) get a Kafka group per topic, so
 * that reading one topic's dead letters never rebalances another's.
 */
export function kafkaGroupId(topic: string, group: string): string {
  return group === DEAD_LETTER_READER_GROUP ? `${group}.${topic}` : group;
}

/** Dead-letter readers start at the beginning when they have no committed offset: every dead letter is owed to them. */
export function isDeadLetterReader(group: string): boolean {
  return group === DEAD_LETTER_READER_GROUP;
}

export interface TopologyConfig {
  readonly admin: Admin;
  readonly partitions: number;
  readonly replicationFactor: number | undefined;
  readonly secrets: readonly string[];
}

/** Creates topics on first use (broker auto-creation stays off) and initialises group offsets. */
export class Topology {
  readonly #config: TopologyConfig;
  readonly #known = new Map<string, Promise<void>>();

  constructor(config: TopologyConfig) {
    this.#config = config;
  }

  /**
   * Creates the topics that do not exist yet; existing topics are used as they are. `op` picks the class of
   * a refusal: a publish to a topic the ACLs forbid is a PublishError, a subscribe a ConnectionError.
   */
  ensureTopics(
    topics: Iterable<string>,
    partitions = this.#config.partitions,
    op: NativeOperation = 'declare',
  ): Promise<void> {
    const names = [...topics];
    const waits: Promise<void>[] = [];
    const missing: string[] = [];
    for (const topic of names) {
      const known = this.#known.get(topic);
      if (known) waits.push(known);
      else missing.push(topic);
    }
    if (missing.length > 0) {
      const created = this.#create(missing, partitions);
      for (const topic of missing) {
        this.#known.set(topic, created);
        created.catch(() => this.#known.delete(topic));
      }
      waits.push(created);
    }
    const all = waits.length === 1 ? (waits[0] as Promise<void>) : Promise.all(waits).then(() => undefined);
    return all.catch((error: unknown) => {
      throw toBusbarError(error, {
        what: `Creating topic '${names.join("', '")}' failed`,
        op,
        secrets: this.#config.secrets,
      });
    });
  }

  /** Native errors as they come: ensureTopics maps them for the operation that needed the topic. */
  async #create(topics: string[], partitions: number): Promise<void> {
    const { admin, replicationFactor } = this.#config;
    // kafkajs' admin gives up on the first connection error (a connection cut just before): retried here.
    await retrying(() =>
      admin.createTopics({
        // kafkajs' own wait gives up on UNKNOWN_TOPIC_OR_PARTITION, which KRaft brokers answer until metadata catches up.
        waitForLeaders: false,
        topics: topics.map((topic) => ({
          topic,
          numPartitions: partitions,
          ...(replicationFactor === undefined ? {} : { replicationFactor }),
        })),
      }),
    );
    await this.#waitForLeaders(topics);
    // Metadata can name a leader before that broker serves the partition: wait until it answers ListOffsets.
    await retrying(() => Promise.all(topics.map((topic) => this.#config.admin.fetchTopicOffsets(topic))));
  }

  async #waitForLeaders(topics: string[]): Promise<void> {
    const deadline = Date.now() + 30_000;
    for (let wait = 20; ; wait = Math.min(wait * 2, 500)) {
      try {
        const { topics: found } = await this.#config.admin.fetchTopicMetadata({ topics });
        if (
          found.length === topics.length &&
          found.every((t) => t.partitions.length > 0 && t.partitions.every((p) => p.leader >= 0))
        )
          return;
      } catch (error) {
        const type = errorType(error);
        if (type !== 'UNKNOWN_TOPIC_OR_PARTITION' && type !== 'LEADER_NOT_AVAILABLE') throw error;
      }
      if (Date.now() > deadline) throw new Error(`Topic leaders not available after 30 s: '${topics.join("', '")}'`);
      await new Promise((resolve) => setTimeout(resolve, wait));
    }
  }

  /**
   * Whether `topic` exists. Asking kafkajs' admin about a missing topic by name
   * makes its metadata refreshes fail until restart, so this lists topics instead.
   */
  /** The topics that exist now; cached ones that no longer do (a closed requester's reply topic) are forgotten. */
  async listTopics(): Promise<string[]> {
    const topics = await this.#config.admin.listTopics();
    const existing = new Set(topics);
    for (const topic of this.#known.keys()) if (!existing.has(topic)) this.#known.delete(topic);
    return topics;
  }

  async exists(topic: string): Promise<boolean> {
    if (this.#known.has(topic)) return true;
    const found = (await this.#config.admin.listTopics()).includes(topic);
    if (found) this.#known.set(topic, Promise.resolve());
    return found;
  }

  /**
   * Partition ids of those of `topics` that exist (for the group leader's assignment). Missing topics are
   * left out before kafkajs is asked anything by name (see exists()).
   */
  async partitions(topics: readonly string[]): Promise<Map<string, number[]>> {
    const existing = new Set(await this.#config.admin.listTopics());
    const wanted = topics.filter((topic) => existing.has(topic));
    if (wanted.length === 0) return new Map();
    const { topics: found } = await retrying(() => this.#config.admin.fetchTopicMetadata({ topics: wanted }));
    return new Map(found.map((t) => [t.name, t.partitions.map((p) => p.partitionId)]));
  }

  /** Partitions of `topic` that `groupId` has no committed offset for. */
  async uncommitted(groupId: string, topic: string): Promise<number[]> {
    const [entry] = await retrying(() => this.#config.admin.fetchOffsets({ groupId, topics: [topic] }));
    return (entry?.partitions ?? []).filter((p) => Number(p.offset) < 0).map((p) => p.partition);
  }

  /** The log end offset of each partition of `topic`. */
  async endOffsets(topic: string): Promise<Map<number, string>> {
    const offsets = await retrying(() => this.#config.admin.fetchTopicOffsets(topic));
    return new Map(offsets.map((o) => [o.partition, o.high]));
  }

  /**
   * Makes a group keep what is published from now on: the topic exists and,
   * if the group has no offsets yet, they are set to the current end. An
   * active group initialises itself when its members join.
   */
  /** Deletes a topic busbar created for itself (a reply topic); forgotten first, so nothing publishes to it. */
  async deleteTopic(topic: string, timeoutMs: number): Promise<void> {
    this.#known.delete(topic);
    await this.#config.admin.deleteTopics({ topics: [topic], timeout: timeoutMs });
  }

  async declareGroup(topic: string, group: string): Promise<void> {
    await this.ensureTopics([topic]);
    if (isDeadLetterReader(group)) return;
    const groupId = kafkaGroupId(topic, group);
    const missing = await this.uncommitted(groupId, topic);
    if (missing.length === 0) return;
    const end = await this.endOffsets(topic);
    try {
      await this.#config.admin.setOffsets({
        groupId,
        topic,
        partitions: missing.map((partition) => ({ partition, offset: end.get(partition) ?? '0' })),
      });
    } catch (error) {
      // "must have no running instances": its members commit start offsets when they join.
      if (!String((error as Error).message).includes('running instances')) throw error;
    }
  }
}
