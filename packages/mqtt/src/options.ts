import { tlsOptionsSchema } from '@busbar/core/transport';
import { z } from 'zod';
import { stringProblem } from './properties.js';

const qos = z.union([z.literal(0), z.literal(1), z.literal(2)]);

/** A busbar topic or pattern (`*` one segment, trailing `#` the rest). */
const topicPattern = z
  .string()
  .regex(
    /^([A-Za-z0-9_-]+|\*)(\.([A-Za-z0-9_-]+|\*))*(\.#)?$|^#$/,
    "use busbar topics with optional '*' segments and a trailing '#'",
  );

/** A literal MQTT topic level prefix: no wildcards, nothing MQTT strings must not carry, not `$`-reserved. */
const pathPrefix = z
  .string()
  .max(1_000)
  .refine((s) => !s.includes('+') && !s.includes('#') && !s.includes('\u0000'), "must not contain '+', '#' or U+0000")
  .refine(
    (s) => stringProblem(s) === undefined,
    'must not contain control characters, Unicode non-characters or lone surrogates (the broker drops the connection)',
  );

/**
 * Options of the MQTT 5 driver, passed beside the URL:
 * `connect({ url: 'mqtt://127.0.0.1:1883', qos: 1, topicPrefix: 'shop/' })`.
 */
export const mqttOptions = z.object({
  /**
   * Prepended to every mapped MQTT topic path: with `'shop/'`, busbar's `orders.created`
   * is published to `shop/orders/created`. Must not start with `$` (reserved by MQTT).
   */
  topicPrefix: pathPrefix.refine((s) => !s.startsWith('$'), "must not start with '$'").default(''),
  /**
   * Default QoS of published messages. 0: at most once (no PUBACK; lost on any fault).
   * 1 (default): at least once, `publish` resolves on PUBACK. 2: exactly once between the
   * client and the broker, `publish` resolves on PUBCOMP (slower; consumers still see
   * at-least-once, because busbar acks after processing).
   */
  qos: qos.default(1),
  /** Per-topic QoS overrides, keyed by busbar topic or pattern (`{ 'metrics.#': 0 }`); the first match wins. */
  topicQos: z.record(topicPattern, qos).default({}),
  /** Topics (or patterns) whose messages are published with the MQTT retain flag: the broker keeps the last one per topic for new subscribers. */
  retainTopics: z.array(topicPattern).default([]),
  /** A last-will message the broker publishes if the publishing connection dies without a clean disconnect. */
  will: z
    .object({
      /** Busbar topic of the will (mapped like every other topic). */
      topic: z.string().regex(/^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$/, 'use a busbar topic without wildcards'),
      payload: z.string().max(65_535).default(''),
      qos: qos.default(1),
      retain: z.boolean().default(false),
    })
    .strict()
    .optional(),
  /**
   * MQTT 5 session expiry of group members' persistent sessions, in seconds: how long the
   * broker keeps a member's subscription and queued messages while it is offline. Default 1 day,
   * or 5 minutes when neither `name` nor `clientIdBase` is set (the default bus name changes with
   * every process, so nothing would ever resume those sessions).
   */
  sessionExpirySeconds: z.number().int().min(1).max(0xffff_fffe).optional(),
  /**
   * Client id base for group members (default: the bus `name`). Member n of group g on topic t
   * uses `<base>:<g>:<t>:<n>`; it must be stable across restarts and distinct per process.
   */
  clientIdBase: z
    .string()
    .min(1)
    .max(100)
    .regex(/^[A-Za-z0-9_.-]+$/, 'use letters, digits, _ . -')
    .optional(),
  /** Largest body + headers accepted, in bytes (match Mosquitto's `message_size_limit`). Default 16 MiB. */
  maxPayloadBytes: z
    .number()
    .int()
    .min(1)
    .max(268_000_000)
    .default(16 * 1024 * 1024),
  /**
   * Unacknowledged QoS 1/2 publishes per connection. Default: the broker's Receive Maximum
   * from CONNACK (Mosquitto: `max_inflight_messages`, 20).
   */
  maxInflight: z.number().int().min(1).max(65_535).optional(),
  /**
   * MQTT topic level under which retries are republished: `<retryTopicPrefix>/<group>/<topic path>`.
   * Not `$`-prefixed: Mosquitto 2.0 does not route `$` topics to shared subscriptions. User
   * wildcard subscriptions that match it (`#`, `+/...`) skip (and PUBACK) retry messages.
   */
  retryTopicPrefix: pathPrefix
    .refine((s) => !s.startsWith('$') && s.length > 0, "must not be empty or start with '$'")
    // A topic level, not a header: core's HEADER registry does not name it.
    .default('busbar-retry'),
  /** Retried messages a member may hold (unacked, waiting until due) at once. */
  retryWindow: z.number().int().min(1).max(65_535).default(10_000),
  /**
   * For this long after the publishing connection comes back, a QoS 1/2 message the broker confirms with "no
   * matching subscribers" (reason 0x10) is sent again every 100 ms until a subscription takes it (within the
   * publish timeout): Mosquitto 2.0 does not restore shared subscriptions after a restart, and drops what is
   * published before the group's members subscribe again. 0 turns it off (0x10 then always resolves the publish).
   */
  resendUnmatchedMs: z.number().int().min(0).max(600_000).default(10_000),
  /** MQTT keepalive, seconds. */
  keepaliveSeconds: z.number().int().min(0).max(65_535).default(30),
  /** Delay between reconnect attempts, ms. */
  reconnectPeriodMs: z.number().int().min(100).max(600_000).default(1_000),
  /** Password, when not in the URL. Never logged. */
  password: z.string().optional(),
  /**
   * For `mqtts://` / `wss://`: `ca`, PEM CA bundle to verify the server with (default: Node's CAs); `cert` and
   * `key`, PEM client certificate and its private key, for a listener with `require_certificate true` (the key is
   * a secret: never logged or shown in errors); `servername`, the name the server certificate must carry when
   * it differs from the URL's host (also sent as SNI); `rejectUnauthorized` (default true) whether to verify it.
   */
  tls: tlsOptionsSchema.optional(),
});

export type MqttOptions = z.output<typeof mqttOptions>;
