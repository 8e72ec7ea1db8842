import { randomBytes, randomUUID } from 'node:crypto';
import { ClosedError, ConfigError } from '@busbar/core';
import {
  type Capabilities,
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
import { type ClientConfig, connectClient, createClient, type RedisClient, subcommand } from './client.js';
import { CLOSE_STEP_MS, CloseState } from './closing.js';
import { clientConfig } from './config.js';
import { type ConsumerContext, openConsumer } from './consumer.js';
import { isReplyError, toBusbarError } from './errors.js';
import { CE_PREFIX } from './fields.js';
import { requestStreamKey, streamKey, topicKeys } from './keys.js';
import { groupLag } from './lag.js';
import { Liveness } from './liveness.js';
import type { RedisOptions } from './options.js';
import { Publisher } from './publisher.js';
import { settlesWithin } from './reader.js';
import { Requester } from './requester.js';
import { Responder } from './responder.js';

const capabilities: Capabilities = {
  durableGroups: true,
  ordering: true,
  wildcards: false,
};

const CONNECTION = 'redis';

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
  /** The bus's secrets and the TLS client key. */
  readonly #secrets: readonly string[];
  readonly #client: RedisClient;
  readonly #liveness: Liveness;
  readonly #publisher: Publisher;
  readonly #consumers: ConsumerContext;
  readonly #subscriptions = new Set<TransportSubscription>();
  #closed = false;
  readonly #closing = new CloseState();

  constructor(ctx: TransportContext<RedisOptions>) {
    this.#ctx = ctx;
    const o = ctx.options;
    if (o.maxLen !== undefined && o.maxAgeMs !== undefined) {
      throw new ConfigError('Invalid connect options: maxLen, maxAgeMs: choose one trimming strategy, not both');
    }
    const { config, secrets } = clientConfig(ctx);
    this.#config = config;
    this.#secrets = secrets;
    const consumerBase = o.consumerName ?? `${ctx.bus.name}-${randomBytes(4).toString('hex')}`;
    let consumers = 0;
    this.#client = createClient(this.#config, false);
    this.#watch(this.#client);
    const silentAfter = ctx.bus.connectTimeoutMs;
    this.#liveness = new Liveness(this.#client, Math.min(5_000, silentAfter), silentAfter, (error) =>
      this.#ctx.reportState(CONNECTION, 'reconnecting', error),
    );
    this.#publisher = new Publisher({
      client: this.#client,
      keyPrefix: o.keyPrefix,
      maxLen: o.maxLen,
      maxAgeMs: o.maxAgeMs,
      waitReplicas: o.waitReplicas,
      waitTimeoutMs: o.waitTimeoutMs,
      publishTimeoutMs: ctx.bus.publishTimeoutMs,
      secrets: this.#secrets,
    });
    this.#consumers = {
      ctx,
      config: this.#config,
      client: this.#client,
      closing: this.#closing,
      secrets: this.#secrets,
      nextConsumer: () => `${consumerBase}-${++consumers}`,
    };
    this.#requester = new Requester({
      client: this.#client,
      config: this.#config,
      keyPrefix: o.keyPrefix,
      blockMs: o.blockMs,
      opTimeoutMs: ctx.bus.publishTimeoutMs,
      closing: this.#closing,
      secrets: this.#secrets,
      logger: ctx.logger,
    });
    this.requestReply = {
      request: (record, options) => this.#requester.request(record, options),
      lateReplies: () => this.#requester.lateReplies,
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
      const error =
        last === undefined
          ? undefined
          : toBusbarError(last, { what: 'Redis connection lost', op: 'connect', secrets: this.#secrets });
      this.#ctx.reportState(CONNECTION, 'reconnecting', error);
    });
  }

  async connect(): Promise<void> {
    this.#ctx.reportState(CONNECTION, 'connecting');
    await connectClient(this.#client, this.#config, this.#secrets);
    // A Cluster resolves connect() before it emits 'ready'.
    this.#ctx.reportState(CONNECTION, 'up');
    this.#liveness.start();
  }

  publish(records: readonly OutgoingRecord[]): Promise<void> {
    return this.#publisher.publish(records);
  }

  async lag(topic: string, group: string): Promise<LagInfo | undefined> {
    try {
      return await groupLag(this.#client, topicKeys(this.#ctx.options.keyPrefix, topic, group), group);
    } catch (error) {
      const what = `Reading the lag of '${group}' on '${topic}'`;
      throw toBusbarError(error, { what, op: 'consume', secrets: this.#secrets });
    }
  }

  async declareGroup(topic: string, group: string): Promise<void> {
    try {
      const stream = streamKey(this.#ctx.options.keyPrefix, topic);
      await subcommand(this.#client, 'XGROUP', 'CREATE', stream, group, '$', 'MKSTREAM');
    } catch (error) {
      if (!isReplyError(error, 'BUSYGROUP')) {
        const what = `Creating group '${group}' on '${topic}'`;
        throw toBusbarError(error, { what, op: 'declare', secrets: this.#secrets });
      }
    }
  }

  async subscribe(spec: SubscribeSpec, callbacks: SubscribeCallbacks): Promise<TransportSubscription> {
    if (this.#closed) throw new ClosedError('The Redis transport is closed');
    const claimIdleMs = this.#ctx.options.claimIdleMs ?? spec.handlerTimeoutMs + 30_000;
    if (claimIdleMs <= spec.handlerTimeoutMs) {
      throw new ConfigError(
        `Invalid connect options: claimIdleMs (${claimIdleMs} ms) must exceed the subscription's handlerTimeoutMs (${spec.handlerTimeoutMs} ms), or a slow handler's message would be claimed by another member while it runs`,
      );
    }
    return this.#track(await openConsumer(this.#consumers, spec, callbacks, claimIdleMs));
  }

  /** Closed with the transport unless closed before. */
  #track(sub: TransportSubscription): TransportSubscription {
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
      consumer: this.#consumers.nextConsumer(),
      prefetch: spec.prefetch,
      blockMs: o.blockMs,
      opTimeoutMs: this.#ctx.bus.publishTimeoutMs,
      closing: this.#closing,
      secrets: this.#secrets,
      logger: this.#ctx.logger,
      ...callbacks,
    });
    try {
      await connectClient(reader, this.#config, this.#secrets, true);
      await responder.start();
    } catch (error) {
      reader.disconnect();
      const what = `Serving requests on '${spec.topic}'`;
      throw toBusbarError(error, { what, op: 'consume', secrets: this.#secrets });
    }
    return this.#track(responder);
  }

  /** `deadline`: when core stops waiting; the connection is dropped by then at the latest. */
  async close(deadline = Number.POSITIVE_INFINITY): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#liveness.stop();
    this.#publisher.close();
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
