import { type BusbarError, ConfigError, ConnectionError } from '@busbar/core';
import {
  type Capabilities,
  HEADER,
  type IncomingRequest,
  type LagInfo,
  type NativeOperation,
  type OutgoingRecord,
  type RequestReply,
  type RespondSpec,
  type RetryRequest,
  type SubscribeCallbacks,
  type SubscribeSpec,
  sanitizeError,
  type Transport,
  type TransportContext,
  type TransportSubscription,
} from '@busbar/core/transport';
import type { Channel } from 'amqplib';
import { settledWithin } from './closing.js';
import { checkHeaderSize, headerTableLimit, type PublishSettings, publishOptions, toBuffer } from './codec.js';
import { Consumer } from './consumer.js';
import type { RabbitDelivery } from './delivery.js';
import { toBusbarError } from './errors.js';
import { Link } from './link.js';
import type { ResolvedOptions } from './options.js';
import { type Outgoing, Publisher } from './publisher.js';
import { Requester } from './requester.js';
import { toIncomingRequest } from './responder.js';
import { declareResponderQueue, rpcExchangeName } from './rpc-topology.js';
import {
  bindTopic,
  checkTopic,
  declareExchange,
  declareGroupQueue,
  declareRetryBucket,
  groupQueueName,
  retryBucket,
  retryExchangeName,
  retryQueueExpiry,
} from './topology.js';

/**
 * The RabbitMQ transport: one connection for publishing (confirm channel) and,
 * from the first subscription on, one for consuming (a channel per
 * subscription), so a publisher blocked by a resource alarm never holds up acks.
 */
export class RabbitMQTransport implements Transport {
  readonly capabilities: Capabilities;
  /** RabbitMQ 4's default `max_message_size` (3.x allowed 128 MiB); raise `maxPayloadBytes` only if the broker allows. */
  readonly maxPayloadBytes = 16 * 1024 * 1024;
  /**
   * CloudEvents attribute headers in binary mode, as the AMQP protocol binding names them: `cloudEvents_`
   * since binding 1.0.2 (the older `cloudEvents:` is still read by core, as every prefix is).
   */
  readonly cloudEventsPrefix = 'cloudEvents_';
  readonly #context: TransportContext<ResolvedOptions>;
  readonly #options: ResolvedOptions;
  readonly #publishLink: Link;
  readonly #publisher: Publisher;
  /** Retries go on their own confirm channel: a channel error there (a deleted retry exchange) never fails user publishes. */
  readonly #retryPublisher: Publisher;
  readonly #settings: PublishSettings;
  readonly #retrySettings: PublishSettings;
  #consumeLink: Promise<Link> | undefined;
  /** Retry buckets declared since the last reconnect, with when (a declaration resets `x-expires`). */
  readonly #buckets = new Map<number, { done: Promise<void>; at: number }>();
  readonly #consumers = new Set<Consumer>();
  /** Direct reply-to on the publishing connection (requests and their replies share one channel there). */
  readonly #requester: Requester;
  readonly requestReply: RequestReply;
  #closed = false;

  constructor(context: TransportContext<ResolvedOptions>) {
    const options = context.options;
    if (options.maxPriority !== undefined && options.queueType !== 'classic') {
      throw new ConfigError("Invalid connect options: maxPriority: priority queues need queueType 'classic'");
    }
    this.#context = context;
    this.#options = options;
    this.capabilities = {
      durableGroups: true,
      ordering: true,
      wildcards: options.exchangeType === 'topic',
    };
    this.#settings = {
      // An existing exchange has no alternate exchange of busbar's: an unroutable message must not vanish.
      mandatory: options.unroutable === 'error' || options.topology === 'existing',
      topicHeader: options.exchangeType === 'headers',
      expiration: options.messageTtlMs === undefined ? undefined : String(options.messageTtlMs),
      priorityHeader: options.priorityHeader,
    };
    this.#retrySettings = {
      mandatory: true,
      topicHeader: false,
      expiration: undefined,
      priorityHeader: options.priorityHeader,
    };
    this.#publishLink = new Link('publisher', context);
    const secrets = context.secrets;
    const onError = (message: string, error: unknown) =>
      context.logger.warn(message, { error: sanitizeError(error, context.secrets) });
    this.#publisher = new Publisher(this.#publishLink, {
      timeoutMs: context.bus.publishTimeoutMs,
      secrets: context.secrets,
      onError,
      prepare: (channel) => declareExchange(channel, options),
      toError: (error) => toBusbarError(error, { what: 'Declaring the exchange failed', op: 'declare', secrets }),
    });
    this.#retryPublisher = new Publisher(this.#publishLink, {
      timeoutMs: context.bus.publishTimeoutMs,
      secrets: context.secrets,
      onError,
      toError: (error) => toBusbarError(error, { what: 'Opening the retry channel failed', op: 'connect', secrets }),
      prepare: async () => {
        // Retry buckets may have been deleted while we were away: declare them again on first use.
        this.#buckets.clear();
      },
    });
    this.#requester = new Requester(this.#publishLink, {
      exchange: rpcExchangeName(options),
      priorityHeader: options.priorityHeader,
      connectTimeoutMs: context.bus.connectTimeoutMs,
      logger: context.logger,
      toError: (error, what) => this.#error(error, what, 'request'),
    });
    this.requestReply = {
      request: (record, requestOptions) => this.#requester.request(record, requestOptions),
      lateReplies: () => this.#requester.lateReplies,
      respond: (spec, callbacks) => this.#respond(spec, callbacks),
    };
  }

  validateTopic(topic: string): void {
    checkTopic(topic);
  }

  async connect(): Promise<void> {
    try {
      await this.#publishLink.open();
      await this.#publisher.ready();
    } catch (error) {
      throw this.#error(error, 'Connecting failed', 'connect');
    }
  }

  publish(records: readonly OutgoingRecord[]): Promise<void> {
    const messages: Outgoing[] = new Array(records.length);
    const exchange = this.#options.exchange;
    const limit = headerTableLimit(this.#publishLink.frameMax);
    try {
      for (let i = 0; i < records.length; i++) {
        const record = records[i] as OutgoingRecord;
        const options = publishOptions(record, this.#settings);
        checkHeaderSize(record.topic, options.headers, limit);
        messages[i] = { exchange, routingKey: record.topic, content: toBuffer(record.body), options };
      }
    } catch (error) {
      // Nothing of the call is sent: a batch goes out whole or not at all.
      return Promise.reject(error);
    }
    return this.#publisher.publish(messages);
  }

  async declareGroup(topic: string, group: string): Promise<void> {
    await this.#withChannel(
      (channel) => declareGroupQueue(channel, topic, group, this.#options, this.#queueExists),
      'Declaring a group failed',
    );
  }

  /** A passive queue check on a short-lived channel (a missing queue closes the channel it was asked on). */
  readonly #queueExists = (queue: string): Promise<boolean> =>
    this.#withChannel(async (channel) => {
      try {
        await channel.checkQueue(queue);
        return true;
      } catch (error) {
        if ((error as { code?: unknown }).code === 404) return false;
        throw error;
      }
    }, `Checking the queue '${queue}' failed`);

  /** `lag`: messages ready in the group's queue (not yet delivered). Unacked counts are not in queue.declare-ok. */
  async lag(topic: string, group: string): Promise<LagInfo | undefined> {
    const queue = groupQueueName(topic, group);
    return this.#withChannel(async (channel) => {
      try {
        const info = await channel.checkQueue(queue);
        return { lag: info.messageCount };
      } catch (error) {
        if ((error as { code?: unknown }).code === 404) return undefined;
        throw error;
      }
    }, 'Reading the queue length failed');
  }

  async subscribe(spec: SubscribeSpec, callbacks: SubscribeCallbacks): Promise<TransportSubscription> {
    const options = this.#options;
    return this.#consume(spec, callbacks, async (channel: Channel) => {
      if (spec.group !== undefined)
        return declareGroupQueue(channel, spec.topic, spec.group, options, this.#queueExists);
      // Broadcast: a server-named queue that lives as long as this consumer.
      const { queue } = await channel.assertQueue('', {
        exclusive: true,
        autoDelete: true,
        durable: false,
        arguments: { 'x-queue-type': 'classic' },
      });
      await bindTopic(channel, queue, spec.topic, options);
      return queue;
    });
  }

  async #consume(
    spec: SubscribeSpec,
    callbacks: SubscribeCallbacks,
    declare: (channel: Channel) => Promise<string>,
  ): Promise<TransportSubscription> {
    if (this.#closed) throw new ConnectionError('The RabbitMQ transport is closed');
    const link = await this.#consumerLink();
    const consumer: Consumer = new Consumer(link, spec, callbacks, {
      logger: this.#context.logger,
      toError: (error, what) => this.#error(error, what, 'consume'),
      retry: (queue, delivery, request) => this.#retry(queue, delivery, request),
      declare,
    });
    await consumer.start(this.#context.bus.connectTimeoutMs);
    this.#consumers.add(consumer);
    const close = consumer.close.bind(consumer);
    return {
      stop: () => consumer.stop(),
      close: async () => {
        this.#consumers.delete(consumer);
        await close();
      },
    };
  }

  /**
   * A responder: a consumer (re-created on reconnect like any subscription) of its request queue, bound to
   * the request exchange; see rpc-topology.ts for the queues.
   */
  async #respond(
    spec: RespondSpec,
    callbacks: { readonly onRequest: (request: IncomingRequest) => void; readonly onError: (error: Error) => void },
  ): Promise<TransportSubscription> {
    const hooks = {
      headerLimit: () => headerTableLimit(this.#publishLink.frameMax),
      logger: this.#context.logger,
    };
    return this.#consume(
      { topic: spec.topic, group: spec.group, prefetch: spec.prefetch, handlerTimeoutMs: 0 },
      {
        onDelivery: (delivery) => {
          const request = toIncomingRequest(delivery, hooks);
          if (request) callbacks.onRequest(request);
        },
        onError: callbacks.onError,
      },
      (channel) => declareResponderQueue(channel, spec.topic, spec.group, this.#options),
    );
  }

  /**
   * A delayed retry: the body goes, confirmed, to the delay bucket's queue with
   * the group queue's name as routing key; when its TTL expires the broker
   * dead-letters it to the default exchange, i.e. back into that queue only.
   */
  async #retry(queue: string, delivery: RabbitDelivery, request: RetryRequest): Promise<void> {
    const bucket = retryBucket(request.delayMs, this.#options.retryBuckets);
    let declared = this.#buckets.get(bucket);
    const expires = retryQueueExpiry(bucket, this.#options);
    // With queue expiry, declare again well before it could lapse (publishing does not count as use).
    if (!declared || (expires !== undefined && Date.now() - declared.at > expires / 2)) {
      const done = this.#withChannel(
        (channel) => declareRetryBucket(channel, bucket, this.#options),
        'Declaring a retry queue failed',
      ).then(() => undefined);
      declared = { done, at: Date.now() };
      this.#buckets.set(bucket, declared);
      done.catch(() => this.#buckets.delete(bucket));
    }
    await declared.done;
    const exchange = retryExchangeName(this.#options, bucket);
    // The retry is the message as it came (raw body, content type and encoding), so it reads back the same.
    const props = delivery.raw.properties;
    const record: OutgoingRecord = {
      topic: delivery.topic,
      id: delivery.id,
      key: delivery.key,
      headers: request.headers,
      body: delivery.raw.content,
      contentType: typeof props.contentType === 'string' ? props.contentType : '',
      timestamp: delivery.timestamp,
    };
    const extra = { [HEADER.attempt]: String(request.attempt), [HEADER.topic]: delivery.topic };
    const options = publishOptions(record, this.#retrySettings, extra);
    if (typeof props.contentEncoding === 'string' && props.contentEncoding !== '')
      options.contentEncoding = props.contentEncoding;
    // Core's retry headers (failure metadata on top of the original ones) could outgrow the header table.
    checkHeaderSize(delivery.topic, options.headers, headerTableLimit(this.#publishLink.frameMax));
    try {
      await this.#retryPublisher.publish([{ exchange, routingKey: queue, content: delivery.raw.content, options }]);
    } catch (error) {
      // Maybe the bucket was deleted behind our back: declare it again next time.
      this.#buckets.delete(bucket);
      throw error;
    }
  }

  /** Runs topology work on a short-lived channel of the publishing connection (a failed declaration closes its channel). */
  async #withChannel<T>(work: (channel: Channel) => Promise<T>, what: string): Promise<T> {
    let channel: Channel | undefined;
    try {
      const model = await this.#publishLink.current(this.#context.bus.connectTimeoutMs);
      channel = await model.createChannel();
      channel.on('error', () => undefined);
      return await work(channel);
    } catch (error) {
      throw this.#error(error, what, 'declare');
    } finally {
      await channel?.close().catch(() => undefined);
    }
  }

  #consumerLink(): Promise<Link> {
    this.#consumeLink ??= (async () => {
      const link = new Link('consumer', this.#context);
      try {
        await link.open();
      } catch (error) {
        this.#consumeLink = undefined;
        await link.close();
        throw this.#error(error, 'Connecting the consumer failed', 'connect');
      }
      return link;
    })();
    return this.#consumeLink;
  }

  #error(error: unknown, what: string, op: NativeOperation): BusbarError {
    return toBusbarError(error, { what, op, secrets: this.#context.secrets });
  }

  /** `deadline`: when core stops waiting; unconfirmed publishes fail and the connections end by then at the latest. */
  async close(deadline = Number.POSITIVE_INFINITY): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    const consumers = Promise.all([...this.#consumers].map((c) => c.close().catch(() => undefined)));
    await Promise.all([settledWithin(consumers, deadline - Date.now()), this.#requester.close()]);
    await Promise.all([this.#publisher.close(deadline), this.#retryPublisher.close(deadline)]);
    // A consumer connection still being opened is closed as soon as it is up, even after close() returned.
    const consumeLink = (this.#consumeLink ?? Promise.resolve(undefined)).then(
      (link) => link?.close(deadline),
      () => undefined,
    );
    await Promise.all([this.#publishLink.close(deadline), settledWithin(consumeLink, deadline - Date.now())]);
  }
}
