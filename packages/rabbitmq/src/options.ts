import { tlsOptionsSchema } from '@busbar/core/transport';
import { z } from 'zod';

const ms = () => z.number().int().nonnegative();

/** Default retry delay buckets (ms): about 1.5x apart, so a delay is rounded up by at most ~1.7x. */
export const DEFAULT_RETRY_BUCKETS: readonly number[] = (() => {
  const out: number[] = [];
  for (let scale = 10; scale <= 10_000_000; scale *= 10) {
    for (const step of [1, 1.5, 2, 3, 5, 7.5]) out.push(Math.round(step * scale));
  }
  return out.filter((d) => d <= 24 * 3600_000);
})();

/**
 * Options of the RabbitMQ driver, passed beside the URL:
 * `connect({ url: 'amqp://...', queueType: 'classic', ... })`.
 */
export const rabbitmqOptions = z.object({
  /** The exchange every topic is published to (declared durable on connect). Default `busbar`. */
  exchange: z.string().min(1).max(200).default('busbar'),
  /**
   * Exchange type. `topic` (default): the topic is the routing key and
   * subscriptions may use `*` / `#`. `direct`: exact topic match, no wildcards.
   * `fanout`: every group gets every message of the exchange whatever the topic.
   * `headers`: routed on the `busbar-topic` header (exact match).
   */
  exchangeType: z.enum(['topic', 'direct', 'fanout', 'headers']).default('topic'),
  /**
   * `declare` (default): busbar declares the exchange (with its alternate exchange) and every group queue with
   * its arguments; an existing one declared otherwise is a ConfigError naming it and the differing argument.
   * `existing`: busbar uses the exchange as it is (a passive check: it must exist; set `exchangeType` to its
   * type) and a group's queue as it is when one of that name exists (no arguments asserted), binding it to the
   * exchange; only groups without a queue get busbar's. No alternate exchange is added, so publishes are
   * `mandatory`: a message no queue takes (and no alternate exchange of theirs) rejects.
   */
  topology: z.enum(['declare', 'existing']).default('declare'),
  /**
   * Group queue type. `quorum` (default): replicated, delivery count tracked
   * by the broker, confirms mean a majority has the message. `classic`: single
   * node, needed for `maxPriority`.
   */
  queueType: z.enum(['quorum', 'classic']).default('quorum'),
  /**
   * What happens to a message no queue is bound for (a topic nobody
   * subscribed to yet). Never silent loss:
   * `alternate-exchange` (default): the exchange gets an alternate exchange
   * `<exchange>.unroutable` whose durable queue of the same name keeps such
   * messages, and `publish` resolves. `error`: messages are published
   * `mandatory`; the broker returns an unroutable one and `publish` rejects
   * with a PublishError. The exchange keeps the setting it was first declared
   * with: switching needs a new `exchange` name (or deleting it).
   */
  unroutable: z.enum(['alternate-exchange', 'error']).default('alternate-exchange'),
  /**
   * Queue expiry (`x-expires`) for group queues (dead-letter reader queues
   * included), retry queues and the unroutable queue: the broker deletes a
   * queue, with its messages, once it had no consumer and no declaration for
   * this long. Off by default: meant for tests and short-lived environments,
   * never for groups or dead letters that must survive idle periods. Retry
   * queues get at least twice their delay plus a minute and are re-declared
   * in time, so pending retries never expire with them.
   */
  queueExpiresMs: z.number().int().positive().optional(),
  /** Per-message TTL (`expiration`) for every published message; expired messages are dropped by the broker. */
  messageTtlMs: z.number().int().positive().optional(),
  /** Group queue length limit (`x-max-length`). With `overflow: 'reject-publish'` (default) a full queue nacks publishes. */
  maxLength: z.number().int().positive().optional(),
  /** Group queue size limit in bytes of bodies (`x-max-length-bytes`). */
  maxLengthBytes: z.number().int().positive().optional(),
  /** What a full group queue does: `reject-publish` (publish rejects; nothing lost) or `drop-head` (oldest dropped). */
  overflow: z.enum(['reject-publish', 'drop-head']).default('reject-publish'),
  /** Makes group queues priority queues (`x-max-priority`, 1-255). Needs `queueType: 'classic'`. */
  maxPriority: z.number().int().min(1).max(255).optional(),
  /** User header whose value (an integer 0-255) becomes the AMQP message priority. Off unless set. */
  priorityHeader: z.string().min(1).optional(),
  /** Retry delay buckets in ms: a retry delay is rounded up to the next bucket (one TTL queue per bucket used). */
  retryBuckets: z
    .array(z.number().int().positive())
    .min(1)
    .max(200)
    .default([...DEFAULT_RETRY_BUCKETS]),
  /** Heartbeat interval asked of the broker, seconds (0 disables). A dead peer is noticed after about twice this. */
  heartbeatSeconds: z.number().int().min(0).max(600).default(10),
  /** Reconnect backoff (amqplib's connection recovery): first delay. */
  reconnectInitialDelayMs: ms().default(100),
  /** Reconnect backoff: largest delay between attempts. */
  reconnectMaxDelayMs: ms().positive().default(5_000),
  /** TLS options for `amqps://` (CA, client certificate, ...), passed to `tls.connect`. */
  tls: tlsOptionsSchema.optional(),
});

export type RabbitMQOptions = z.input<typeof rabbitmqOptions>;
export type ResolvedOptions = z.output<typeof rabbitmqOptions>;
