import { tlsOptionsSchema } from '@busbar/core/transport';
import { z } from 'zod';

/** Stream names: NATS forbids whitespace, `.`, `*`, `>`, `/` and `\` (they become file names and subject tokens). */
export const STREAM_NAME = /^[A-Za-z0-9_-]{1,200}$/;
const streamName = z.string().regex(STREAM_NAME, "use 1-200 letters, digits, '_' or '-' (no whitespace . * > / \\)");

/** A busbar topic or pattern a stream captures: dot-separated tokens, `*` for one, trailing `#` for the rest. */
const topicPattern = z
  .string()
  .regex(
    /^([A-Za-z0-9_-]+|\*)(\.([A-Za-z0-9_-]+|\*))*(\.#)?$|^#$/,
    "use busbar topics with optional '*' tokens and a trailing '#'",
  );

const ms = () => z.number().int().nonnegative();

/**
 * Options of the NATS JetStream driver, passed beside the URL:
 * `connect({ url: 'nats://127.0.0.1:4222', replicas: 3 })`.
 */
export const natsOptions = z.object({
  /** More servers (`host:port`) for the client to use besides the URL's host(s). */
  servers: z.array(z.string().regex(/^[^\s,/]+(:\d{1,5})?$/, 'use host:port')).default([]),
  /** NATS user credentials as an alternative to the URL's user info; the password never appears in errors or logs. */
  user: z.string().min(1).optional(),
  pass: z.string().min(1).optional(),
  /** A NATS auth token (secret). Give one auth method: user/pass, token, nkeySeed, creds or credsFile. */
  token: z.string().min(1).optional(),
  /** The seed of a user nkey (`SU...`, secret) for nkey authentication. */
  nkeySeed: z
    .string()
    .regex(/^SU[A-Z2-7]{56}$/, 'expected a user nkey seed (58 characters starting with SU)')
    .optional(),
  /** The contents of a `.creds` file (user JWT and nkey seed; secret), for operator/JWT authentication. */
  creds: z.string().min(1).optional(),
  /** The path of a `.creds` file, read at connect (its contents are treated as a secret). */
  credsFile: z.string().min(1).optional(),
  /**
   * TLS: `true` to require it with the system CAs, or PEM `ca` (the server's CA), `cert` and `key` (a client
   * certificate for servers that verify clients; the key is a secret). Default off: the client still upgrades
   * when the server requires TLS.
   */
  tls: z.union([z.boolean(), tlsOptionsSchema]).default(false),
  /**
   * Streams are named `<streamPrefix><first topic segment>` and capture `<segment>` and `<segment>.>`
   * (topic `orders.created` goes to stream `BUSBAR_orders`). Ignored for topics matched by `streams`.
   */
  streamPrefix: z
    .string()
    .regex(/^[A-Za-z0-9_-]{0,100}$/, "use letters, digits, '_' or '-' (no whitespace . * > / \\)")
    .default('BUSBAR_'),
  /**
   * Explicit mapping: stream name -> the busbar topics/patterns it captures (`#` becomes the NATS `>` plus
   * the bare prefix). The first stream whose patterns match a topic wins; unmatched topics use `streamPrefix`.
   * Dead-letter topics (`<topic>.<group>.dlq`) must be captured as well, e.g. `orders.#`.
   */
  streams: z.record(streamName, z.array(topicPattern).min(1)).default({}),
  /** Where streams busbar creates keep messages. `file` survives a server restart; `memory` does not. */
  storage: z.enum(['file', 'memory']).default('file'),
  /** Stream replicas in a cluster (1-5). Use 3 for safety against a node loss. */
  replicas: z.number().int().min(1).max(5).default(1),
  /** Stream limits (0 = unlimited): message age, total bytes, message count. */
  maxAgeMs: ms().default(0),
  maxBytes: z.number().int().nonnegative().default(0),
  maxMsgs: z.number().int().nonnegative().default(0),
  /** How long the server remembers `Nats-Msg-Id`s to drop re-sent publishes (default 2 min). */
  duplicateWindowMs: ms().positive().default(120_000),
  /** Update the config of an existing stream to add missing subjects and options (default true). */
  updateStreams: z.boolean().default(true),
  /**
   * Consumer ack wait: an unacked message is redelivered after this. busbar sends `working()` for every
   * message it still holds (queued or running), so slow handlers are not redelivered meanwhile.
   */
  ackWaitMs: ms().min(1_000).default(30_000),
  /** Pull request expiry and heartbeat: a consumer missing 2 heartbeats (expires/2) is checked and re-created. */
  pullExpiresMs: ms().min(1_000).max(60_000).default(10_000),
  /**
   * Request subjects are `<requestPrefix><topic>`. The default keeps requests out of every stream busbar
   * creates (a stream capturing a request's subject would store it and answer it with a PubAck); set it to
   * `''` to use the topic itself as the subject, for foreign services that request or answer on it (its topics
   * must then not be captured by any stream: busbar checks and fails with a ConfigError). README, "Request/reply".
   */
  requestPrefix: z
    .string()
    .max(200)
    .regex(/^([A-Za-z0-9_-]+\.)*$/, "use '' or dot-terminated tokens of letters, digits, '_' or '-' (like 'rpc.')")
    .default('_busbar.rr.'),
  /** Reconnect attempts (-1 = forever) and the wait between them. */
  maxReconnectAttempts: z.number().int().min(-1).default(-1),
  reconnectTimeWaitMs: ms().default(1_000),
});

export type NatsOptions = z.output<typeof natsOptions>;
