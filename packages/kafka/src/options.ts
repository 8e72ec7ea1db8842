import { tlsOptionsSchema } from '@busbar/core/transport';
import { z } from 'zod';

/** Options of the `kafka://host:port` driver (validated strictly by `connect()`). */
export const kafkaOptions = z.object({
  /** Extra seed brokers (`host:port`) besides the one in the URL. */
  brokers: z.array(z.string().regex(/^[A-Za-z0-9_.-]+:\d{1,5}$/, 'expected host:port')).optional(),
  /** Client id the broker sees in its logs and quotas. Default: the bus name. */
  clientId: z.string().min(1).max(200).optional(),
  /** TLS to the brokers: `true` for the system CAs, or certificates. Default off. */
  tls: z.union([z.boolean(), tlsOptionsSchema]).default(false),
  /**
   * SASL mechanism for the user name and password in the URL
   * (`kafka://user:pass@host:9092`). Default `plain` when the URL has credentials.
   */
  saslMechanism: z.enum(['plain', 'scram-sha-256', 'scram-sha-512']).optional(),
  /** Partitions of topics busbar creates (main, retry and dead-letter topics). Existing topics are left as they are. */
  partitions: z.number().int().min(1).max(10_000).default(3),
  /** Replication factor of topics busbar creates. Default: the broker's `default.replication.factor`. Use 3 in production. */
  replicationFactor: z.number().int().min(1).max(32_767).optional(),
  /**
   * Record batch compression. `gzip` is built in; `snappy`, `lz4` and `zstd`
   * need a codec registered in kafkajs' `CompressionCodecs` first (see README).
   */
  compression: z.enum(['none', 'gzip', 'snappy', 'lz4', 'zstd']).default('none'),
  /**
   * The broker's (or topic's) `message.max.bytes`: the largest record batch
   * it takes. busbar rejects bigger messages before sending and keeps
   * producer batches below it. Default 1,000,000 (the broker default is 1,048,588).
   */
  maxMessageBytes: z.number().int().min(16_384).max(1_073_741_824).default(1_000_000),
  /** Consumer group session timeout: a member silent this long is dropped and its partitions reassigned. */
  sessionTimeoutMs: z.number().int().min(1_000).max(3_600_000).default(10_000),
  /** How often members heartbeat; also bounds how fast a member notices a rebalance. */
  heartbeatIntervalMs: z.number().int().min(100).max(60_000).default(1_000),
  /** How long the group waits for every member to rejoin during a rebalance. */
  rebalanceTimeoutMs: z.number().int().min(1_000).max(3_600_000).default(10_000),
  /** Longest a fetch waits on the broker for new records (lower = quicker reaction, more requests). */
  maxWaitTimeMs: z.number().int().min(10).max(30_000).default(500),
  /** Offsets of settled messages are committed at most this often (and on close). */
  commitIntervalMs: z.number().int().min(0).max(60_000).default(100),
  /**
   * Where a group with no committed offset starts. busbar commits the end
   * offsets when a group first joins, so this only matters for groups created
   * outside busbar. Default false (the latest offset).
   */
  fromBeginning: z.boolean().default(false),
  /**
   * The topic replies to this bus's requests come back on (Spring's reply topic). Default: a topic of its
   * own, `<bus name>.replies.<uuid>`, created at the first request and deleted at close. A topic named here is
   * created when missing and never deleted; give each bus instance its own.
   */
  replyTopic: z
    .string()
    .regex(/^[A-Za-z0-9._-]{1,249}$/, 'expected a Kafka topic name ([a-zA-Z0-9._-], at most 249 characters)')
    .optional(),
});

export type KafkaOptions = z.output<typeof kafkaOptions>;
export type KafkaOptionsInput = z.input<typeof kafkaOptions>;
