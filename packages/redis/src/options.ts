import { tlsOptionsSchema } from '@busbar/core/transport';
import { z } from 'zod';

/**
 * Options of the Redis Streams driver, given beside the URL:
 * `connect({ url: 'redis://127.0.0.1:6379', keyPrefix: 'app:', claimIdleMs: 60_000 })`.
 */
export const redisOptions = z.object({
  /** Prefix of every key busbar creates. Keys are `<prefix>{<topic>}` (streams) and `<prefix>{<topic>}:...` (retry keys). */
  keyPrefix: z
    .string()
    .max(200)
    .regex(/^[^{}\s]*$/, 'must not contain braces (they would change the cluster hash tag) or whitespace')
    .default('busbar:'),
  /**
   * Approximate stream trimming on every XADD (`MAXLEN ~ n`). Off by default:
   * trimming deletes entries whether or not every group consumed them, so it
   * can drop unconsumed messages. Entries trimmed while pending are acked away.
   */
  maxLen: z.number().int().positive().optional(),
  /** Approximate trimming by age (`MINID ~ <now - maxAgeMs>`). Off by default, same caveat as `maxLen`. */
  maxAgeMs: z.number().int().positive().optional(),
  /**
   * A group member's pending entry idle longer than this is claimed by another
   * member (XAUTOCLAIM). Must exceed every subscription's `handlerTimeoutMs`,
   * or two members would run the same message at once (checked at subscribe).
   * Default: the subscription's `handlerTimeoutMs` + 30 s. Busbar refreshes the
   * idle time of entries it holds, so queued (not yet running) entries are safe.
   */
  claimIdleMs: z.number().int().positive().optional(),
  /** How often each group subscription looks for claimable entries (dead members, released entries). */
  claimIntervalMs: z.number().int().positive().default(1_000),
  /** How often each group subscription moves due retries from its retry set back to the group. */
  retryPollMs: z.number().int().positive().default(500),
  /** Longest blocking XREADGROUP / XREAD; bounds how fast a stop is seen when CLIENT UNBLOCK is unavailable (cluster). */
  blockMs: z.number().int().positive().max(60_000).default(2_000),
  /**
   * Stable consumer name prefix within each group. With it, a restarted
   * process re-reads its own pending entries at once instead of waiting for
   * another member to claim them. Default: the bus name plus a random suffix.
   */
  consumerName: z.string().min(1).max(200).optional(),
  /** Treat the URL's host as a seed node of a Redis Cluster (ioredis Cluster). */
  cluster: z.boolean().default(false),
  /** More cluster seed nodes, as `host:port` (implies `cluster`). */
  clusterNodes: z.array(z.string().regex(/^[^\s:]+:\d+$/, 'expected host:port')).optional(),
  /** Redis password, when not in the URL (redacted everywhere). */
  password: z.string().optional(),
  /**
   * TLS: `true` for the system CAs, or PEM `ca` (the server's CA), `cert` and `key` (a client certificate, for a
   * server with `tls-auth-clients yes`; the key is a secret). `rediss://` URLs use TLS with the system CAs when
   * this is not set. With Sentinel, the sentinels are reached with the same settings.
   */
  tls: z.union([z.boolean(), tlsOptionsSchema]).optional(),
  /** Sentinel user name, for sentinels with ACLs (`redis+sentinel://` URLs; the URL's user is the data nodes'). */
  sentinelUsername: z.string().min(1).optional(),
  /** Sentinel password (`requirepass` of the sentinels; secret). */
  sentinelPassword: z.string().optional(),
  /**
   * After every publish, `WAIT <waitReplicas> <waitTimeoutMs>`: a publish resolves only once that many replicas
   * have the entries, and rejects (retryable PublishError) when fewer confirmed in time. Redis replicates
   * asynchronously: without it, a confirmed message can be lost when the primary dies before a replica has it.
   * Default 0 (off). Not with a Redis Cluster.
   */
  waitReplicas: z.number().int().min(0).max(100).default(0),
  /** How long a publish waits for `waitReplicas` replicas (WAIT's timeout). */
  waitTimeoutMs: z.number().int().positive().max(60_000).default(1_000),
});

export type RedisOptions = z.output<typeof redisOptions>;
