import type { z } from 'zod';
import type { Logger } from '../logger.js';

/**
 * The transport contract (SPI). A driver package implements {@link Transport}
 * for one broker and exports a {@link Driver} named `driver`; `connect()` finds it
 * by URL scheme. Core owns everything broker-agnostic (validation, codecs,
 * retry policy, dead-letter records, idempotency, concurrency, per-key order);
 * a transport only moves bytes and settles deliveries.
 */

/**
 * What a transport can do. Each one changes what busbar does or which promises apply, and the conformance
 * suite checks every one a transport claims (and that an unclaimed one is refused, where that is observable).
 */
export interface Capabilities {
  /** A group keeps receiving messages published while none of its members is connected. */
  readonly durableGroups: boolean;
  /** One group member sees messages of one key in publish order. */
  readonly ordering: boolean;
  /** `*` and `#` in subscription topics; without it such a subscription is an UnsupportedError. */
  readonly wildcards: boolean;
  /**
   * `bus.request` / `bus.respond` over the broker's own mechanism. Set by core from `Transport.requestReply`
   * (a driver does not declare it); without it they are an UnsupportedError.
   */
  readonly requestReply?: boolean;
}

/** A message on its way to the broker. `headers` are the user's plus busbar's own `busbar-*` ones. */
export interface OutgoingRecord {
  readonly topic: string;
  /** The busbar message id. Drivers carry it in a native field when there is one, else in `busbar-id`. */
  readonly id: string;
  readonly key: string | undefined;
  readonly headers: Readonly<Record<string, string>>;
  readonly body: Uint8Array;
  readonly contentType: string;
  /** Publish time, ms since the epoch. */
  readonly timestamp: number;
}

/** What core asks of `Delivery.retry`. */
export interface RetryRequest {
  /** Deliver again after about this long. */
  readonly delayMs: number;
  /** The attempt number the redelivery must report (current + 1). */
  readonly attempt: number;
  /** Headers the redelivered message must carry (the original ones plus `busbar-first-failure`, ...). */
  readonly headers: Readonly<Record<string, string>>;
}

/**
 * One received message, owned by core until it is settled exactly once with
 * `ack`, `retry` or `release`. Nothing may be acked on the broker before core
 * calls `ack`.
 */
export interface Delivery {
  readonly id: string;
  readonly topic: string;
  readonly key: string | undefined;
  /** Every header received, `busbar-*` ones included (core strips those for the user). */
  readonly headers: Readonly<Record<string, string>>;
  readonly body: Uint8Array;
  /** Publish time, ms since the epoch. */
  readonly timestamp: number;
  /**
   * The content type the message carries (native field or header), as sent; undefined when it has none.
   * Core decodes by it on topics with the default codec (JSON, text, bytes, CloudEvents).
   */
  readonly contentType?: string | undefined;
  /**
   * True when the message carried no usable id (neither busbar's nor a native one such as AMQP `message_id`)
   * and the driver made a unique one up: idempotency cannot deduplicate such a message, and core says so once
   * per subscription. A driver takes an empty id, one over 1 KB or one with control characters as absent.
   */
  readonly idGenerated?: boolean;
  /** 1 on first delivery; from the broker's delivery count or the `busbar-attempt` header. */
  readonly attempt: number;
  /** The native record. */
  readonly raw: unknown;
  /**
   * Optional: where the broker keeps this message (partition and offset, stream sequence, entry id), as
   * `busbar-*` headers that its retries and its dead letter carry on. Called only when the message fails,
   * so a delivery pays nothing for it otherwise. A delivery read back from a driver's retry queue returns
   * nothing: its headers already hold the facts of the first read.
   */
  deadLetterHeaders?(): Readonly<Record<string, string>> | undefined;
  /** The group is done with this message. Drivers may coalesce acks; resolve once written. */
  ack(): Promise<void>;
  /**
   * Bring the message back to this group only, after `delayMs`, without
   * blocking other messages (broker delay, retry queue/topic, ...). Resolve once
   * that is durable and the original will not be delivered again on its own.
   */
  retry(request: RetryRequest): Promise<void>;
  /** Unprocessed (closing): give the message back so any member gets it again soon. Never acks. */
  release(): Promise<void>;
}

export interface SubscribeSpec {
  /** A topic name or, when the transport has `wildcards`, a pattern with `*` / `#`. */
  readonly topic: string;
  /** Competing consumers share a group; `undefined` is a broadcast subscription (non-durable, from now on). */
  readonly group: string | undefined;
  /** At most this many deliveries may be unsettled at once (broker prefetch, max ack pending, ...). */
  readonly prefetch: number;
  /** Handler timeout; brokers with an ack deadline must allow at least this long (or extend it). */
  readonly handlerTimeoutMs: number;
  /**
   * Where core writes this subscription's dead letters (undefined: dead-lettering is off). A driver that
   * must know in advance that the broker will take writes there (a NATS stream covering the subject) checks
   * it here and fails the subscribe with a ConfigError naming the cause.
   */
  readonly deadLetterTopic?: string | undefined;
}

export interface SubscribeCallbacks {
  /** Called for every delivery, synchronously; core queues it. */
  readonly onDelivery: (delivery: Delivery) => void;
  /** A failure the subscription cannot recover from on its own (it is logged and shown in health). */
  readonly onError: (error: Error) => void;
}

export interface TransportSubscription {
  /** Stop intake: no `onDelivery` after this resolves. Deliveries already handed over can still be settled. */
  stop(): Promise<void>;
  /** Release resources after core settled or released everything. */
  close(): Promise<void>;
}

/** Consumer progress of one group on one topic, as the broker reports it. Omitted fields are unknown. */
export interface LagInfo {
  /** Messages kept for the group that it has not received yet (Kafka group lag, JetStream num_pending, RabbitMQ ready, Redis lag). */
  readonly lag?: number;
  /** Delivered to a member but not settled (Redis PEL, JetStream num_ack_pending, RabbitMQ unacknowledged). */
  readonly pending?: number;
  /** Messages the broker holds for the topic (Redis XLEN, JetStream stream messages). */
  readonly backlog?: number;
}

export type ConnectionState = 'connecting' | 'up' | 'reconnecting' | 'down';

export interface ConnectionHealth {
  readonly name: string;
  readonly state: ConnectionState;
  readonly since: Date;
  /** The last error, redacted. */
  readonly error?: string;
}

/** A reply on its way back, or as received by the requester. */
export interface ReplyRecord {
  readonly body: Uint8Array;
  readonly contentType: string | undefined;
  /** busbar's `busbar-error*` headers mark a failed request (see core's request.ts); user headers otherwise. */
  readonly headers: Readonly<Record<string, string>>;
}

/** One request received by a responder: answer it once with `reply`. */
export interface IncomingRequest {
  readonly id: string;
  readonly topic: string;
  readonly headers: Readonly<Record<string, string>>;
  readonly body: Uint8Array;
  readonly contentType: string | undefined;
  readonly timestamp: number;
  readonly raw: unknown;
  /** Sends the reply to the requester by the broker's native mechanism. Core calls it exactly once per request. */
  reply(reply: ReplyRecord): Promise<void>;
}

export interface RespondSpec {
  readonly topic: string;
  /** Responders of one group share requests (queue group, shared subscription, one queue); none: every one answers. */
  readonly group: string | undefined;
  readonly prefetch: number;
}

/**
 * Request/reply by the broker's own mechanism (NATS inboxes, AMQP direct reply-to, MQTT 5 response topic and
 * correlation data, ...), so services without busbar can take part on either side.
 */
export interface RequestReply {
  /**
   * Sends `record` as a request and resolves with the first reply. Rejects with a `TimeoutError` after
   * `timeoutMs`, `NoRespondersError` where the broker says nobody listens, `AbortedError` when `signal` fires,
   * `ClosedError` when the transport closes; a late reply is dropped, nothing per request is left behind.
   */
  request(
    record: OutgoingRecord,
    options: { readonly timeoutMs: number; readonly signal?: AbortSignal },
  ): Promise<ReplyRecord>;
  /**
   * Replies that came when no request waited for them any more (late after a timeout or abort), dropped: the
   * `late` count of the driver's PendingReplies. Optional; core reports it in its request diagnostics.
   */
  lateReplies?(): number;
  /** Serves requests on `spec.topic`: `onRequest` for each; resolves once requests published afterwards arrive. */
  respond(
    spec: RespondSpec,
    callbacks: { readonly onRequest: (request: IncomingRequest) => void; readonly onError: (error: Error) => void },
  ): Promise<TransportSubscription>;
}

export interface Transport {
  /** Request/reply, where the driver implements it (`bus.request` is an UnsupportedError otherwise). */
  readonly requestReply?: RequestReply;
  readonly capabilities: Capabilities;
  /**
   * The prefix the CloudEvents protocol binding of this broker gives attribute headers in binary mode: Kafka
   * `ce_`, AMQP `cloudEvents_` (binding 1.0.2; core also reads the older `cloudEvents:`), MQTT 5 none (user
   * properties by name), `ce-` for NATS and elsewhere (the default).
   */
  readonly cloudEventsPrefix?: string;
  /**
   * The largest body + headers the broker takes; core rejects bigger messages
   * before sending. Read on every publish, so it may change once connected
   * (NATS learns `max_payload` from the server).
   */
  readonly maxPayloadBytes: number;
  /** Broker-specific topic checks on top of core's portable grammar; throw `InvalidTopicError`. */
  validateTopic?(topic: string, use: 'publish' | 'subscribe'): void;
  /** Connect or fail with a `ConnectionError` (redacted) within the connect timeout. */
  connect(): Promise<void>;
  /**
   * Resolve when the broker has taken responsibility for every record (confirm,
   * acks=all, PubAck, XADD reply, PUBACK). Concurrent calls should be pipelined.
   * On failure reject with a `BusbarError` (`PublishError`, `TimeoutError`, ...).
   */
  publish(records: readonly OutgoingRecord[]): Promise<void>;
  subscribe(spec: SubscribeSpec, callbacks: SubscribeCallbacks): Promise<TransportSubscription>;
  /**
   * Make sure that from now on `group` keeps every message published to `topic`
   * even while nobody consumes it (create the queue / stream / consumer group).
   * Used before the first dead letter is written so dead letters can be read back.
   */
  declareGroup(topic: string, group: string): Promise<void>;
  /** Optional: the consumer lag of `group` on `topic` (a concrete topic, not a pattern). */
  lag?(topic: string, group: string): Promise<LagInfo | undefined>;
  /**
   * Flush what is in flight, then disconnect. Called once. `deadline` (ms since the epoch) is when core stops
   * waiting (closeTimeoutMs): a driver should give up flushing by then and end its connections, so nothing
   * keeps working (or reconnecting) behind a close() that already returned.
   */
  close(deadline?: number): Promise<void>;
}

/** Everything a driver's factory gets. */
export interface TransportContext<Options> {
  /** The parsed URL (never log it: use `redactUrl`). For a seed list, parsed with the first host. */
  readonly url: URL;
  /** Every `host:port` of the URL, in order (`kafka://a:9092,b:9092` gives both). */
  readonly hosts: readonly string[];
  /** Driver options, validated by the driver's schema. */
  readonly options: Options;
  /** Shared bus options every transport honours. */
  readonly bus: {
    readonly name: string;
    readonly connectTimeoutMs: number;
    readonly publishTimeoutMs: number;
    /** The bound of `bus.close()`; `Transport.close(deadline)` gets the moment it ends. */
    readonly closeTimeoutMs: number;
  };
  /** Strings that must never appear in errors or logs (URL password, option secrets). */
  readonly secrets: readonly string[];
  readonly logger: Logger;
  /** Report a connection state change: feeds `bus.health()` and the `busbar:connection` channel. */
  readonly reportState: (connection: string, state: ConnectionState, error?: unknown) => void;
  /**
   * The connection is gone on purpose (closed, or given up after the call that opened it failed): it leaves
   * `bus.health()`, so a connection that no longer exists cannot keep the bus reported down.
   */
  readonly forgetState?: (connection: string) => void;
}

const DRIVER = Symbol.for('busbar.driver');

export interface Driver<Schema extends z.ZodObject = z.ZodObject> {
  readonly name: string;
  /** URL schemes this driver serves, without the colon. */
  readonly schemes: readonly string[];
  /** Driver options; merged with core's bus options into one strict schema for `connect({ url, ... })`. */
  readonly options: Schema;
  /** Options whose values are secrets (redacted everywhere): names, or dotted paths into objects (`tls.key`). */
  readonly secretOptions?: readonly string[];
  create(context: TransportContext<z.output<Schema>>): Transport;
  readonly [DRIVER]: true;
}

/** Brands a driver so `connect()` can recognise it across duplicate installs. */
export function defineDriver<Schema extends z.ZodObject>(driver: Omit<Driver<Schema>, typeof DRIVER>): Driver<Schema> {
  return Object.freeze({ ...driver, [DRIVER]: true as const });
}

export function isDriver(value: unknown): value is Driver {
  return typeof value === 'object' && value !== null && (value as Record<symbol, unknown>)[DRIVER] === true;
}
