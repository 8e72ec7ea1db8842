import { randomBytes, randomUUID } from 'node:crypto';
import { ClosedError, ConfigError } from '@busbar/core';
import {
  type Capabilities,
  Coalescer,
  type IncomingRequest,
  type LagInfo,
  type OutgoingRecord,
  type RequestReply,
  type RespondSpec,
  type SubscribeCallbacks,
  type SubscribeSpec,
  type Transport,
  type TransportContext,
  type TransportSubscription,
  withTimeout,
} from '@busbar/core/transport';
import { BroadcastSubscription } from './broadcast.js';
import { type ClientConfig, connectClient, createClient, type RedisClient, subcommand } from './client.js';
import { CLOSE_STEP_MS, CloseState } from './closing.js';
import { pushEntryFields } from './codec.js';
import { isReplyError, toBusbarError } from './errors.js';
import { CE_PREFIX } from './fields.js';
import { GroupSubscription } from './group.js';
import { requestStreamKey, streamKey, topicKeys } from './keys.js';
import { groupLag } from './lag.js';
import type { RedisOptions } from './options.js';
import { settlesWithin } from './reader.js';
import { Requester } from './requester.js';
import { Responder } from './responder.js';
import { ensureGroup } from './topology.js';

const capabilities: Capabilities = {
  durableGroups: true,
  ordering: true,
  wildcards: false,
};

const CONNECTION = 'redis';
/** XADDs per explicit pipeline. */
const PIPELINE = 100;

/** Redis Streams: a stream per topic, a consumer group per busbar group, retries through a per-group sorted set. */
export class RedisTransport implements Transport {
  readonly capabilities = capabilities;
  /** Redis has no CloudEvents binding: attributes go as `ce-<attr>` fields, as in the HTTP and NATS bindings. */
  readonly cloudEventsPrefix = CE_PREFIX;
  /** Redis takes up to 512 MB per value; a stream entry that big would stall every reader, so busbar stops at 16 MiB. */
  readonly maxPayloadBytes = 16 * 1024 * 1024;
  /** Request/reply over streams: README "Request/reply", rr-wire.ts. */
  readonly requestReply: RequestReply;
  readonly #requester: Requester;
  readonly #ctx: TransportContext<RedisOptions>;
  readonly #config: ClientConfig;
  readonly #client: RedisClient;
  readonly #coalescer: Coalescer<OutgoingRecord>;
  readonly #subscriptions = new Set<TransportSubscription>();
  readonly #consumerBase: string;
  #consumers = 0;
  #closed = false;
  readonly #closing = new CloseState();

  constructor(ctx: TransportContext<RedisOptions>) {
    this.#ctx = ctx;
    const o = ctx.options;
    if (o.maxLen !== undefined && o.maxAgeMs !== undefined) {
      throw new ConfigError('Invalid connect options: maxLen, maxAgeMs: choose one trimming strategy, not both');
    }
    this.#config = {
      url: ctx.url,
      password: o.password,
      cluster: o.cluster,
      clusterNodes: o.clusterNodes,
      connectTimeoutMs: ctx.bus.connectTimeoutMs,
      connectionName: ctx.bus.name.replace(/\s/g, '_'),
    };
    this.#consumerBase = o.consumerName ?? `${ctx.bus.name}-${randomBytes(4).toString('hex')}`;
    this.#client = createClient(this.#config, false);
    this.#watch(this.#client);
    this.#coalescer = new Coalescer((records) => this.#flush(records), 1_000);
    this.#requester = new Requester({
      client: this.#client,
      config: this.#config,
      keyPrefix: o.keyPrefix,
      blockMs: o.blockMs,
      opTimeoutMs: ctx.bus.publishTimeoutMs,
      closing: this.#closing,
      secrets: ctx.secrets,
      logger: ctx.logger,
    });
    this.requestReply = {
      request: (record, options) => this.#requester.request(record, options),
      respond: (spec, callbacks) => this.#respond(spec, callbacks),
    };
  }

  #watch(client: RedisClient): void {
    let up = false;
    client.on('ready', () => {
      up = true;
      // A fresh connection answers again: close-time commands are worth waiting for.
      this.#closing.silent = false;
      this.#ctx.reportState(CONNECTION, 'up');
    });
    let last: unknown;
    // An error event alone (a reply error, a node's hiccup in a cluster) is not a lost connection; 'reconnecting' is.
    client.on('error', (error: unknown) => {
      last = error;
    });
    client.on('reconnecting', () => {
      if (!up || this.#closed) return;
      const error = last === undefined ? undefined : toBusbarError(last, this.#ctx.secrets, 'Redis connection lost');
      this.#ctx.reportState(CONNECTION, 'reconnecting', error);
    });
  }

  async connect(): Promise<void> {
    this.#ctx.reportState(CONNECTION, 'connecting');
    await connectClient(this.#client, this.#config, this.#ctx.secrets);
    // A Cluster resolves connect() before it emits 'ready'.
    this.#ctx.reportState(CONNECTION, 'up');
  }

  publish(records: readonly OutgoingRecord[]): Promise<void> {
    if (this.#closed) return Promise.reject(new ClosedError('The Redis transport is closed'));
    if (records.length === 1) return this.#coalescer.submit(records[0] as OutgoingRecord);
    return this.#flush(records);
  }

  /**
   * One XADD per record, written in one go: a batch for one topic as one explicit pipeline (one promise for
   * the batch, and one slot in a cluster), coalesced single publishes auto-pipelined. After a reconnect
   * ioredis re-sends XADDs whose reply was lost, so an entry can be written twice; it keeps its busbar id,
   * and idempotent consumers drop the copy.
   */
  async #flush(records: readonly OutgoingRecord[]): Promise<void> {
    const now = Date.now();
    const first = records[0] as OutgoingRecord;
    const oneTopic = records.every((r) => r.topic === first.topic);
    let written: Promise<unknown>;
    if (oneTopic && records.length > 1) {
      // Pipelines of 100 (PERFORMANCE.md): ioredis writes each as its commands are built, so Redis starts on
      // the first while the rest are encoded.
      const pipelines: Promise<void>[] = [];
      for (let i = 0; i < records.length; i += PIPELINE) {
        const pipeline = this.#client.pipeline();
        const end = Math.min(records.length, i + PIPELINE);
        for (let j = i; j < end; j++) pipeline.call('XADD', this.#xaddArgs(records[j] as OutgoingRecord, now));
        pipelines.push(pipeline.exec().then(firstPipelineError));
      }
      written = Promise.all(pipelines);
    } else {
      written = Promise.all(records.map((record) => this.#client.call('XADD', this.#xaddArgs(record, now))));
    }
    try {
      await withTimeout(
        written,
        this.#ctx.bus.publishTimeoutMs,
        `Publishing ${records.length} message(s) to Redis timed out after ${this.#ctx.bus.publishTimeoutMs} ms (outcome unknown)`,
      );
    } catch (error) {
      throw toBusbarError(error, this.#ctx.secrets, 'XADD failed');
    }
  }

  #xaddArgs(record: OutgoingRecord, now: number): (string | Buffer | number)[] {
    const { maxLen, maxAgeMs, keyPrefix } = this.#ctx.options;
    const args: (string | Buffer | number)[] = [streamKey(keyPrefix, record.topic)];
    if (maxLen !== undefined) args.push('MAXLEN', '~', maxLen);
    else if (maxAgeMs !== undefined) args.push('MINID', '~', now - maxAgeMs);
    args.push('*');
    pushEntryFields(args, record, now);
    return args;
  }

  async lag(topic: string, group: string): Promise<LagInfo | undefined> {
    try {
      return await groupLag(this.#client, topicKeys(this.#ctx.options.keyPrefix, topic, group), group);
    } catch (error) {
      throw toBusbarError(error, this.#ctx.secrets, `Reading the lag of '${group}' on '${topic}' failed`);
    }
  }

  async declareGroup(topic: string, group: string): Promise<void> {
    try {
      await subcommand(
        this.#client,
        'XGROUP',
        'CREATE',
        streamKey(this.#ctx.options.keyPrefix, topic),
        group,
        '$',
        'MKSTREAM',
      );
    } catch (error) {
      if (!isReplyError(error, 'BUSYGROUP'))
        throw toBusbarError(error, this.#ctx.secrets, `Creating group '${group}' failed`);
    }
  }

  async subscribe(spec: SubscribeSpec, callbacks: SubscribeCallbacks): Promise<TransportSubscription> {
    if (this.#closed) throw new ClosedError('The Redis transport is closed');
    const o = this.#ctx.options;
    const claimIdleMs = o.claimIdleMs ?? spec.handlerTimeoutMs + 30_000;
    if (claimIdleMs <= spec.handlerTimeoutMs) {
      throw new ConfigError(
        `Invalid connect options: claimIdleMs (${claimIdleMs} ms) must exceed the subscription's handlerTimeoutMs (${spec.handlerTimeoutMs} ms), or a slow handler's message would be claimed by another member while it runs`,
      );
    }
    const reader = createClient({ ...this.#config, connectionName: `${this.#config.connectionName}-reader` }, true);
    reader.on('error', () => undefined); // reported through the read loop (sanitized); the event itself must not crash
    let sub: GroupSubscription | BroadcastSubscription;
    try {
      await connectClient(reader, this.#config, this.#ctx.secrets);
      const common = {
        client: this.#client,
        reader,
        topic: spec.topic,
        prefetch: spec.prefetch,
        blockMs: o.blockMs,
        opTimeoutMs: this.#ctx.bus.publishTimeoutMs,
        closing: this.#closing,
        secrets: this.#ctx.secrets,
        logger: this.#ctx.logger,
        callbacks,
      };
      if (spec.group === undefined) {
        sub = new BroadcastSubscription({ ...common, stream: streamKey(o.keyPrefix, spec.topic) });
      } else {
        const keys = topicKeys(o.keyPrefix, spec.topic, spec.group);
        await ensureGroup(this.#client, keys, spec.group);
        sub = new GroupSubscription({
          ...common,
          keys,
          group: spec.group,
          consumer: `${this.#consumerBase}-${++this.#consumers}`,
          claimIdleMs,
          claimIntervalMs: o.claimIntervalMs,
          retryPollMs: o.retryPollMs,
        });
      }
      await sub.start();
    } catch (error) {
      reader.disconnect();
      throw toBusbarError(error, this.#ctx.secrets, `Subscribing to '${spec.topic}' failed`);
    }
    this.#subscriptions.add(sub);
    return {
      stop: () => sub.stop(),
      close: async () => {
        this.#subscriptions.delete(sub);
        await sub.close();
      },
    };
  }

  /** A responder: its own read connection, the busbar group as the consumer group (or a group of its own). */
  async #respond(
    spec: RespondSpec,
    callbacks: { readonly onRequest: (request: IncomingRequest) => void; readonly onError: (error: Error) => void },
  ): Promise<TransportSubscription> {
    if (this.#closed) throw new ClosedError('The Redis transport is closed');
    const o = this.#ctx.options;
    const reader = createClient({ ...this.#config, connectionName: `${this.#config.connectionName}-responder` }, true);
    reader.on('error', () => undefined); // reported through the read loop (sanitized)
    const responder = new Responder({
      client: this.#client,
      reader,
      stream: requestStreamKey(o.keyPrefix, spec.topic),
      topic: spec.topic,
      // Without a busbar group every responder answers: each reads through a group of its own.
      group: spec.group ?? `busbar-rr-${randomUUID()}`,
      ownGroup: spec.group === undefined,
      consumer: `${this.#consumerBase}-${++this.#consumers}`,
      prefetch: spec.prefetch,
      blockMs: o.blockMs,
      opTimeoutMs: this.#ctx.bus.publishTimeoutMs,
      closing: this.#closing,
      secrets: this.#ctx.secrets,
      logger: this.#ctx.logger,
      ...callbacks,
    });
    try {
      await connectClient(reader, this.#config, this.#ctx.secrets);
      await responder.start();
    } catch (error) {
      reader.disconnect();
      throw toBusbarError(error, this.#ctx.secrets, `Serving requests on '${spec.topic}' failed`);
    }
    this.#subscriptions.add(responder);
    return {
      stop: () => responder.stop(),
      close: async () => {
        this.#subscriptions.delete(responder);
        await responder.close();
      },
    };
  }

  /** `deadline`: when core stops waiting; the connection is dropped by then at the latest. */
  async close(deadline = Number.POSITIVE_INFINITY): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    // Pending requests fail at once; the reply stream goes before the connection does.
    await this.#requester.close(deadline);
    const subscriptions = Promise.all([...this.#subscriptions].map((sub) => sub.close().catch(() => undefined)));
    if (!(await settlesWithin(subscriptions, deadline - Date.now()))) this.#closing.silent = true;
    try {
      // QUIT waits for the replies of what is in flight; while disconnected it could only wait for a reconnect.
      if (this.#client.status !== 'ready' || this.#closing.silent) throw new Error('not connected or silent');
      const bound = Math.min(CLOSE_STEP_MS, Math.max(0, deadline - Date.now()));
      await withTimeout(this.#client.quit(), bound, 'quit timed out');
    } catch {
      this.#client.disconnect();
    }
    this.#ctx.reportState(CONNECTION, 'down');
  }
}

/** A pipeline's first command error, thrown (exec() resolves with per-command [error, result] pairs). */
function firstPipelineError(results: [Error | null, unknown][] | null): void {
  if (results === null) throw new Error('The Redis pipeline was discarded');
  for (const [error] of results) if (error) throw error;
}
