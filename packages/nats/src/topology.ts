import { ConfigError } from '@busbar/core';
import type { LagInfo } from '@busbar/core/transport';
import {
  AckPolicy,
  type ConsumerInfo,
  DeliverPolicy,
  type JetStreamManager,
  nanos,
  ReplayPolicy,
  RetentionPolicy,
  StorageType,
} from 'nats';
import { hedgeApi } from './api.js';
import { apiErrorCode, isNotFound } from './errors.js';
import { type StreamTarget, streamFor, subjectCovers, toSubject } from './names.js';
import type { NatsOptions } from './options.js';
import { RETRY_STREAM_KEY, retryConsumerName } from './retry.js';

/** JetStream API error: the subjects overlap with an existing stream. */
const SUBJECT_OVERLAP = 10065;
/** JetStream API error: a consumer of that name exists with another config. */
const CONSUMER_EXISTS = 10148;

export interface ConsumerSettings {
  readonly ackWaitMs: number;
  readonly maxAckPending: number;
  /** Bring an existing consumer's ack wait / max ack pending to these values (members do; `declareGroup` does not). */
  readonly update: boolean;
  /** Start from the first message kept (a retry consumer on its work-queue stream) instead of new ones. */
  readonly deliverAll?: boolean;
}

/**
 * Creates streams and durable consumers on first use and caches the result,
 * so the publish hot path does one `Map` lookup per topic.
 */
export class Topology {
  readonly #jsm: JetStreamManager;
  readonly #options: NatsOptions;
  /** How long a declaration (one stream or consumer made sure of) may take: the bus's connect timeout. */
  readonly #budgetMs: number;
  /** topic -> stream name, once the stream is known to capture it. */
  readonly #topicStreams = new Map<string, string>();
  readonly #streams = new Map<string, Promise<string>>();
  readonly #consumers = new Map<string, Promise<void>>();
  /** stream -> its creation time (ms), read whenever busbar makes sure of the stream. */
  readonly #epochs = new Map<string, number>();

  constructor(jsm: JetStreamManager, options: NatsOptions, budgetMs: number) {
    this.#jsm = jsm;
    this.#options = options;
    this.#budgetMs = budgetMs;
  }

  /** Runs an idempotent JetStream API call within the declaration budget, asking again when an answer is slow. */
  hedge<T>(call: () => Promise<T>): Promise<T> {
    return hedgeApi(this.#budgetMs, call);
  }

  /** The stream of a topic when it is already ensured (synchronous, for the hot path). */
  known(topic: string): string | undefined {
    return this.#topicStreams.get(topic);
  }

  /**
   * When `stream` was created (ms since the epoch), once busbar made sure of it: foreign message ids include
   * it, so a stream deleted and created again (its sequences start over) does not repeat ids.
   */
  epoch(stream: string): number | undefined {
    return this.#epochs.get(stream);
  }

  #remember(info: { readonly config: { readonly name: string }; readonly created: string }): void {
    const created = Date.parse(info.created);
    if (Number.isFinite(created)) this.#epochs.set(info.config.name, created);
  }

  /** Forget a topic's stream (it was deleted under us): the next use re-creates it. */
  forget(topic: string): void {
    const name = this.#topicStreams.get(topic);
    this.#topicStreams.delete(topic);
    if (name !== undefined) {
      this.#streams.delete(name);
      for (const key of this.#consumers.keys()) if (key.startsWith(`${name}/`)) this.#consumers.delete(key);
    }
  }

  /** Makes sure a stream captures `topic` (a topic or a pattern); resolves with the stream's name. */
  async ensureStream(topic: string): Promise<string> {
    const known = this.#topicStreams.get(topic);
    if (known !== undefined) return known;
    return this.#ensure(topic, streamFor(topic, this.#options), RetentionPolicy.Limits);
  }

  /**
   * The stream of busbar's retry copies, `<prefix>_busbar_retry` capturing `_busbar.retry.>`: a work queue
   * (a copy is removed once acked), so it only holds the retries still due.
   */
  async ensureRetryStream(): Promise<string> {
    const key = RETRY_STREAM_KEY;
    const known = this.#topicStreams.get(key);
    if (known !== undefined) return known;
    const target = { name: `${this.#options.streamPrefix}_busbar_retry`, subjects: [key] };
    return this.#ensure(key, target, RetentionPolicy.Workqueue);
  }

  async #ensure(key: string, target: StreamTarget, retention: RetentionPolicy): Promise<string> {
    let pending = this.#streams.get(target.name);
    if (!pending) {
      pending = this.hedge(() => this.#createStream(target, retention));
      this.#streams.set(target.name, pending);
      pending.catch(() => this.#streams.delete(target.name));
    }
    const name = await pending;
    if (this.#topicStreams.size < 100_000) this.#topicStreams.set(key, name);
    return name;
  }

  /**
   * Makes sure a publish to `subject` will be stored: the stream busbar picks for it (creating it or adding
   * the subject where it may) must really capture it. A user's stream found in its place that does not
   * (the `streams` map or an existing stream covers the topic but not its dead letters) is a ConfigError
   * now rather than a refused write at the first failure. `what` names the subject's role.
   */
  async assertCovered(subject: string, what: string, ensure: () => Promise<string>): Promise<void> {
    let name: string;
    try {
      name = await ensure();
    } catch (error) {
      throw new ConfigError(
        `No JetStream stream can capture the ${what} subject '${subject}': ${(error as Error)?.message ?? error}`,
        { cause: error },
      );
    }
    const info = await this.hedge(() => this.#jsm.streams.info(name));
    if (info.config.subjects?.some((s) => subjectCovers(s, subject))) return;
    throw new ConfigError(
      `The ${what} subject '${subject}' is not captured by stream '${name}' (subjects: ${(info.config.subjects ?? []).join(', ')}), ` +
        "so writes to it would be refused: add it to that stream (e.g. a 'streams' pattern ending in '.#') or map it to another stream",
    );
  }

  async #createStream(target: StreamTarget, retention: RetentionPolicy): Promise<string> {
    const o = this.#options;
    try {
      const info = await this.#jsm.streams.info(target.name);
      this.#remember(info);
      const missing = target.subjects.filter((s) => !info.config.subjects.includes(s));
      if (missing.length > 0 && o.updateStreams) {
        await this.#jsm.streams.update(target.name, {
          ...info.config,
          subjects: [...info.config.subjects, ...missing],
        });
      }
      return target.name;
    } catch (error) {
      if (!isNotFound(error)) throw error;
    }
    try {
      const info = await this.#jsm.streams.add({
        name: target.name,
        subjects: [...target.subjects],
        storage: o.storage === 'memory' ? StorageType.Memory : StorageType.File,
        retention,
        num_replicas: o.replicas,
        max_age: nanos(o.maxAgeMs),
        // Size limits would drop retries still due without a trace: the retry stream only holds what is pending.
        max_bytes: o.maxBytes === 0 || retention === RetentionPolicy.Workqueue ? -1 : o.maxBytes,
        max_msgs: o.maxMsgs === 0 || retention === RetentionPolicy.Workqueue ? -1 : o.maxMsgs,
        duplicate_window: nanos(o.duplicateWindowMs),
      });
      this.#remember(info);
      return target.name;
    } catch (error) {
      // Another stream already captures these subjects (the user's own): use it.
      if (apiErrorCode(error) !== SUBJECT_OVERLAP) throw error;
      const name = await this.#jsm.streams.find(target.subjects[target.subjects.length - 1] as string);
      this.#remember(await this.#jsm.streams.info(name));
      return name;
    }
  }

  /**
   * Makes sure the durable pull consumer `name` exists on `stream` (new ones
   * start with the messages published from now on) with the given ack settings.
   */
  ensureConsumer(stream: string, name: string, filter: string | undefined, settings: ConsumerSettings): Promise<void> {
    const key = `${stream}/${name}/${settings.ackWaitMs}/${settings.maxAckPending}/${filter}`;
    let pending = this.#consumers.get(key);
    if (!pending) {
      pending = this.hedge(() => this.#createConsumer(stream, name, filter, settings));
      this.#consumers.set(key, pending);
      pending.catch(() => this.#consumers.delete(key));
    }
    return pending;
  }

  async #createConsumer(
    stream: string,
    name: string,
    filter: string | undefined,
    settings: ConsumerSettings,
  ): Promise<void> {
    const ackWait = nanos(settings.ackWaitMs);
    for (let attempt = 0; ; attempt++) {
      try {
        const info = await this.#jsm.consumers.info(stream, name);
        const differs = info.config.ack_wait !== ackWait || info.config.max_ack_pending !== settings.maxAckPending;
        if (settings.update && differs) {
          await this.#jsm.consumers.update(stream, name, {
            ack_wait: ackWait,
            max_ack_pending: settings.maxAckPending,
          });
        }
        return;
      } catch (error) {
        if (!isNotFound(error)) throw error;
      }
      try {
        await this.#jsm.consumers.add(stream, {
          durable_name: name,
          ack_policy: AckPolicy.Explicit,
          deliver_policy: settings.deliverAll ? DeliverPolicy.All : DeliverPolicy.New,
          replay_policy: ReplayPolicy.Instant,
          ...(filter === undefined ? {} : { filter_subject: filter }),
          ack_wait: ackWait,
          max_ack_pending: settings.maxAckPending,
          max_deliver: -1,
        });
        return;
      } catch (error) {
        // Another member created it meanwhile with other settings: read it again and update.
        if (apiErrorCode(error) !== CONSUMER_EXISTS || attempt > 2) throw error;
      }
    }
  }

  /** Counters of a group's consumer, or undefined when its stream or consumer does not exist (nothing is created). */
  async lag(topic: string, consumer: string): Promise<LagInfo | undefined> {
    const stream = this.#topicStreams.get(topic) ?? streamFor(topic, this.#options).name;
    try {
      const [c, s, r] = await Promise.all([
        this.#jsm.consumers.info(stream, consumer),
        this.#jsm.streams.info(stream, { subjects_filter: topic }),
        this.#retryInfo(stream, consumer),
      ]);
      return {
        lag: c.num_pending + (r?.num_pending ?? 0),
        pending: c.num_ack_pending + (r?.num_ack_pending ?? 0),
        backlog: s.state.subjects?.[topic] ?? 0,
      };
    } catch (error) {
      if (isNotFound(error)) return undefined;
      throw error;
    }
  }

  /** The group's retry consumer: copies not read yet count as lag, read ones (waiting until due) as pending. */
  async #retryInfo(stream: string, consumer: string): Promise<ConsumerInfo | undefined> {
    const retryStream = this.#topicStreams.get(RETRY_STREAM_KEY) ?? `${this.#options.streamPrefix}_busbar_retry`;
    try {
      return await this.#jsm.consumers.info(retryStream, retryConsumerName(stream, consumer));
    } catch (error) {
      if (isNotFound(error)) return undefined;
      throw error;
    }
  }

  async consumerInfo(stream: string, name: string): Promise<void> {
    await this.#jsm.consumers.info(stream, name);
  }

  /** The consumer filter for a busbar pattern, or undefined for "the whole stream" (client-side filtering). */
  filterFor(pattern: string, stream: string): { filter: string | undefined; exact: boolean } {
    if (!pattern.endsWith('#')) return { filter: toSubject(pattern), exact: true };
    // `a.#` must match `a` too, which one NATS filter cannot express (2.10's filter_subjects can, 2.9 cannot):
    // take the whole stream and filter here unless the stream holds exactly `a` and `a.>`.
    const target = streamFor(pattern, this.#options);
    const bare = pattern === '#' ? '' : pattern.slice(0, -2);
    if (target.name === stream && target.subjects.length === 2 && target.subjects[0] === bare) {
      return { filter: undefined, exact: true };
    }
    return { filter: undefined, exact: false };
  }
}
