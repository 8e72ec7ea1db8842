import { ConfigError, ConnectionError, InvalidHeaderError, InvalidTopicError, TimeoutError } from '@busbar/core';
import type {
  Capabilities,
  IncomingRequest,
  LagInfo,
  OutgoingRecord,
  RequestReply,
  RespondSpec,
  SubscribeCallbacks,
  SubscribeSpec,
  Transport,
  TransportContext,
  TransportSubscription,
} from '@busbar/core/transport';
import { explainTls, redactUrl, sanitizeError, withTimeout } from '@busbar/core/transport';
import type { Admin, CompressionTypes as CompressionType, Kafka as KafkaClient, KafkaConfig, LogEntry } from 'kafkajs';
import { isContentType } from './codec.js';
import { KafkaSubscription } from './consumer.js';
import { toBusbarError } from './errors.js';
import { CompressionCodecs, CompressionTypes, installKafkajsPatch, Kafka, logLevel } from './internals.js';
import type { KafkaOptions } from './options.js';
import { Publisher } from './publisher.js';
import { Requester } from './requester.js';
import { KafkaResponder } from './responder.js';
import { SocketRegistry } from './sockets.js';
import { isLegalTopic, kafkaGroupId, retrying, Topology } from './topology.js';

const capabilities: Capabilities = {
  durableGroups: true,
  ordering: true,
  wildcards: false,
};

const COMPRESSION: Record<KafkaOptions['compression'], CompressionType> = {
  none: CompressionTypes.None,
  gzip: CompressionTypes.GZIP,
  snappy: CompressionTypes.Snappy,
  lz4: CompressionTypes.LZ4,
  zstd: CompressionTypes.ZSTD,
};

/** kafkajs ships placeholders for the optional codecs that throw when used. */
function codecAvailable(type: CompressionType): boolean {
  const factory = (CompressionCodecs as Record<number, (() => unknown) | undefined>)[type];
  try {
    return typeof factory === 'function' && factory() !== undefined;
  } catch {
    return false;
  }
}

/** Room for what core does not count against `maxPayloadBytes`: id, key, busbar headers, record and batch overhead. */
const RECORD_OVERHEAD = 1_536;

/** `kafka://[user:pass@]host:port` on kafkajs. */
export class KafkaTransport implements Transport {
  readonly capabilities = capabilities;
  /** The CloudEvents Kafka binding's attribute header prefix. */
  readonly cloudEventsPrefix = 'ce_';
  readonly maxPayloadBytes: number;
  readonly #context: TransportContext<KafkaOptions>;
  readonly #kafka: KafkaClient;
  readonly #admin: Admin;
  readonly #topology: Topology;
  readonly #publisher: Publisher;
  readonly #subscriptions = new Set<KafkaSubscription | KafkaResponder>();
  readonly #requester: Requester;
  readonly requestReply: RequestReply;
  readonly #secrets: readonly string[];
  readonly #sockets = new SocketRegistry();
  readonly #closeTimeoutMs: number;
  #connected = false;
  #closed = false;

  constructor(context: TransportContext<KafkaOptions>) {
    // Before any kafkajs client exists: busbar's connections need the patch from their first connect.
    installKafkajsPatch();
    this.#context = context;
    this.#closeTimeoutMs = context.bus.closeTimeoutMs;
    const o = context.options;
    const compression = COMPRESSION[o.compression];
    if (compression !== CompressionTypes.None && !codecAvailable(compression)) {
      throw new ConfigError(
        `Invalid connect options: compression: '${o.compression}' needs a codec registered in kafkajs' CompressionCodecs first (see the @busbar/kafka README)`,
      );
    }
    const tlsKey = typeof o.tls === 'object' ? o.tls.key : undefined;
    this.#secrets = tlsKey ? [...context.secrets, tlsKey] : context.secrets;
    this.maxPayloadBytes = o.maxMessageBytes - RECORD_OVERHEAD;
    this.#kafka = new Kafka(this.#clientConfig());
    this.#admin = this.#kafka.admin();
    this.#topology = new Topology({
      admin: this.#admin,
      partitions: o.partitions,
      replicationFactor: o.replicationFactor,
      secrets: this.#secrets,
    });
    this.#publisher = new Publisher({
      kafka: this.#kafka,
      compression,
      maxBatchBytes: Math.floor(o.maxMessageBytes * 0.9),
      maxMessageBytes: o.maxMessageBytes,
      timeoutMs: context.bus.publishTimeoutMs,
      secrets: this.#secrets,
      ensureTopics: (topics) => this.#topology.ensureTopics(topics, undefined, 'publish'),
      listTopics: () => this.#topology.listTopics(),
      onState: (state, error) => context.reportState('producer', state, error),
    });
    this.#requester = new Requester({
      kafka: this.#kafka,
      options: o,
      topology: this.#topology,
      publisher: this.#publisher,
      busName: context.bus.name,
      logger: context.logger,
      secrets: this.#secrets,
      joinTimeoutMs: this.#joinTimeoutMs(),
    });
    this.requestReply = {
      request: (record, options) => this.#requester.request(record, options),
      lateReplies: () => this.#requester.lateReplies,
      respond: (spec, callbacks) => this.#respond(spec, callbacks),
    };
  }

  #joinTimeoutMs(): number {
    return Math.max(this.#context.bus.connectTimeoutMs, 15_000);
  }

  async #respond(
    spec: RespondSpec,
    callbacks: { readonly onRequest: (request: IncomingRequest) => void; readonly onError: (error: Error) => void },
  ): Promise<TransportSubscription> {
    const responder = new KafkaResponder(spec, callbacks, {
      kafka: this.#kafka,
      options: this.#context.options,
      topology: this.#topology,
      publisher: this.#publisher,
      logger: this.#context.logger,
      secrets: this.#secrets,
      joinTimeoutMs: this.#joinTimeoutMs(),
      closeTimeoutMs: this.#closeTimeoutMs,
    });
    return this.#track(responder, `Serving requests on '${spec.topic}' failed`);
  }

  /** Starts a subscription or responder; one that fails to start is closed, one that started is closed with the transport. */
  async #track(subscription: KafkaSubscription | KafkaResponder, what: string): Promise<TransportSubscription> {
    try {
      await subscription.start();
    } catch (error) {
      await subscription.close().catch(() => undefined);
      throw toBusbarError(error, { what, op: 'consume', secrets: this.#secrets });
    }
    this.#subscriptions.add(subscription);
    const close = subscription.close.bind(subscription);
    subscription.close = async () => {
      this.#subscriptions.delete(subscription);
      await close();
    };
    return subscription;
  }

  #clientConfig(): KafkaConfig {
    const { url, options: o, bus, logger } = this.#context;
    const seeds = this.#context.hosts.length > 0 ? this.#context.hosts : [url.host || '127.0.0.1'];
    const withPort = seeds.map((host) => (/:\d+$/.test(host) ? host : `${host}:9092`));
    const brokers = [...new Set([...withPort, ...(o.brokers ?? [])])];
    const username = decodeURIComponent(url.username);
    const password = decodeURIComponent(url.password);
    const secrets = this.#secrets;
    const config: KafkaConfig = {
      clientId: o.clientId ?? bus.name,
      brokers,
      socketFactory: this.#sockets.factory,
      connectionTimeout: Math.min(bus.connectTimeoutMs, 10_000),
      requestTimeout: 30_000,
      retry: { initialRetryTime: 100, maxRetryTime: 2_000, retries: 8 },
      // kafkajs logs every reconnect attempt as an error: keep its chatter at debug level, redacted.
      logLevel: logLevel.WARN,
      logCreator:
        () =>
        ({ namespace, log }: LogEntry) =>
          logger.debug(`kafkajs ${namespace}: ${sanitizeError(new Error(log.message), secrets).message}`),
    };
    if (o.tls !== false) config.ssl = o.tls === true ? true : { ...o.tls };
    if (username) {
      const mechanism = o.saslMechanism ?? 'plain';
      config.sasl = { mechanism, username, password } as KafkaConfig['sasl'];
    } else if (o.saslMechanism) {
      throw new ConfigError(
        'Invalid connect options: saslMechanism: the URL has no user name and password (kafka://user:pass@host:9092)',
      );
    }
    return config;
  }

  validateTopic(topic: string): void {
    if (!isLegalTopic(topic)) {
      throw new InvalidTopicError(
        `'${topic}' is not a valid Kafka topic name ([a-zA-Z0-9._-], at most 249 characters, not '.' or '..')`,
      );
    }
  }

  async connect(): Promise<void> {
    const { bus, url } = this.#context;
    this.#context.reportState('producer', 'connecting');
    try {
      // kafkajs retries a refused port or an unknown host until the timeout: the last socket error says which.
      const timedOut = () => {
        const last = this.#sockets.lastError;
        const why = last === undefined ? '' : `; last error: ${explainTls(last.message) ?? last.message}`;
        return new TimeoutError(`no connection within ${bus.connectTimeoutMs} ms${why}`);
      };
      await withTimeout(this.#connectBy(Date.now() + bus.connectTimeoutMs), bus.connectTimeoutMs, timedOut);
      this.#connected = true;
      this.#sockets.connected();
    } catch (error) {
      this.#connectGaveUp = true;
      // Nothing to flush: stop kafkajs' connect attempts now, or they keep the process alive.
      this.#publisher.abort();
      this.#sockets.shutdown();
      const clean = sanitizeError(error, this.#secrets);
      this.#context.reportState('producer', 'down', clean);
      // A refused login or certificate fails the same way again (not retryable); the rest may heal.
      const mapped = toBusbarError(error, { what: 'Connect', op: 'connect', secrets: this.#secrets });
      const retryable = mapped instanceof ConnectionError ? mapped.retryable : true;
      const why = explainTls(clean.message, (clean as { code?: string }).code) ?? clean.message;
      throw new ConnectionError(`Could not connect to Kafka at ${redactUrl(url)}: ${why}`, {
        cause: clean,
        retryable,
      });
    }
  }

  #connectGaveUp = false;

  /**
   * A cluster that has just started answers metadata before it knows its controller (controller id -1), and
   * the idempotent producer's init then fails at once with KafkaJSBrokerNotFound ("Broker -1 not found in the
   * cached metadata"): seen when connecting to a 3-node KRaft cluster right after it came up. That one error is
   * tried again, with backoff, until the connect deadline; every other error fails the connect as before.
   */
  async #connectBy(deadline: number): Promise<void> {
    for (let delay = 100; ; delay = Math.min(delay * 2, 1_000)) {
      try {
        await Promise.all([this.#admin.connect(), this.#publisher.connect()]);
        return;
      } catch (error) {
        const name = (error as { name?: unknown } | null)?.name;
        if (name !== 'KafkaJSBrokerNotFound' || Date.now() + delay >= deadline || this.#connectGaveUp) throw error;
        this.#context.logger.debug(
          `Kafka is not ready yet (${sanitizeError(error, this.#secrets).message}); connecting again`,
        );
      }
      await new Promise((resolve) => setTimeout(resolve, delay));
      if (this.#connectGaveUp) return;
    }
  }

  publish(records: readonly OutgoingRecord[]): Promise<void> {
    for (const record of records) {
      for (const name in record.headers) {
        if (isContentType(name)) {
          return Promise.reject(
            new InvalidHeaderError(
              `Header name '${name}' is reserved on Kafka: it carries the codec's content type (message.contentType)`,
            ),
          );
        }
      }
    }
    return this.#publisher.publish(records);
  }

  async subscribe(spec: SubscribeSpec, callbacks: SubscribeCallbacks): Promise<TransportSubscription> {
    const subscription = new KafkaSubscription(spec, callbacks, {
      kafka: this.#kafka,
      options: this.#context.options,
      topology: this.#topology,
      publisher: this.#publisher,
      logger: this.#context.logger,
      closeTimeoutMs: this.#closeTimeoutMs,
      secrets: this.#secrets,
      joinTimeoutMs: this.#joinTimeoutMs(),
      reportState: this.#context.reportState,
      forgetState: (connection) => this.#context.forgetState?.(connection),
    });
    return this.#track(subscription, `Subscribing to '${spec.topic}' failed`);
  }

  async declareGroup(topic: string, group: string): Promise<void> {
    try {
      await this.#topology.declareGroup(topic, group);
    } catch (error) {
      throw toBusbarError(error, {
        what: `Declaring group '${group}' on '${topic}' failed`,
        op: 'declare',
        secrets: this.#secrets,
      });
    }
  }

  /** Group lag on `topic`: log end offsets minus the group's committed offsets (in-flight messages count as lag). */
  async lag(topic: string, group: string): Promise<LagInfo | undefined> {
    try {
      if (!(await this.#topology.exists(topic))) return undefined;
      const [committed, end] = await Promise.all([
        retrying(() => this.#admin.fetchOffsets({ groupId: kafkaGroupId(topic, group), topics: [topic] })),
        this.#topology.endOffsets(topic),
      ]);
      const partitions = committed[0]?.partitions ?? [];
      if (partitions.every((p) => Number(p.offset) < 0)) return undefined;
      let lag = 0;
      for (const p of partitions) {
        const offset = Number(p.offset);
        if (offset >= 0) lag += Math.max(0, Number(end.get(p.partition) ?? 0) - offset);
      }
      return { lag };
    } catch (error) {
      throw toBusbarError(error, {
        what: `Reading the lag of '${group}' on '${topic}' failed`,
        op: 'consume',
        secrets: this.#secrets,
      });
    }
  }

  /**
   * Flushes and disconnects within closeTimeoutMs, broker up or down; then every socket left is destroyed
   * and kafkajs' reconnect loops end, so a closed bus keeps nothing running.
   */
  async close(until?: number): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    const deadline = until ?? Date.now() + this.#closeTimeoutMs;
    // Pending requests are rejected at once, whatever happens to the rest.
    const requests = this.#requester.close(deadline);
    if (this.#connected) {
      const graceful = (async () => {
        await Promise.all([...this.#subscriptions].map((s) => s.close().catch(() => undefined)));
        await requests;
        await this.#publisher.close();
        await this.#admin.disconnect().catch(() => undefined);
      })();
      await withTimeout(graceful, Math.max(1, deadline - Date.now()), 'close').catch(() => undefined);
    }
    this.#publisher.abort();
    this.#sockets.shutdown();
    this.#context.reportState('producer', 'down');
  }
}
