import { z } from 'zod';
import { ConfigError } from './errors.js';
import { guardStore, type IdempotencyStore } from './idempotency.js';
import type { Logger } from './logger.js';
import type { ConsumeMiddleware } from './middleware.js';

/** Turns a zod failure into a ConfigError naming each bad field by path. */
export function configError(what: string, error: z.ZodError): ConfigError {
  const lines = error.issues.slice(0, 8).map((issue) => {
    const path = issue.path.length > 0 ? issue.path.map(String).join('.') : '(root)';
    if (issue.code === 'unrecognized_keys') {
      return `${path === '(root)' ? '' : `${path}: `}unknown option${issue.keys.length > 1 ? 's' : ''} ${issue.keys.map((k) => `'${k}'`).join(', ')}`;
    }
    return `${path}: ${issue.message}`;
  });
  return new ConfigError(`Invalid ${what}: ${lines.join('; ')}`);
}

export function parseOptions<S extends z.ZodType>(schema: S, value: unknown, what: string): z.output<S> {
  const result = schema.safeParse(value);
  if (!result.success) throw configError(what, result.error);
  return result.data;
}

const loggerSchema = z.custom<Logger>(
  (v) =>
    typeof v === 'object' &&
    v !== null &&
    ['debug', 'info', 'warn', 'error'].every((m) => typeof (v as Record<string, unknown>)[m] === 'function'),
  { message: 'expected an object with debug, info, warn and error methods' },
);

/**
 * The longest delay a Node timer can hold (2^31-1 ms, about 24.8 days): a larger one fires at once
 * (setTimeout overflows to 1 ms), which turned a "retry in a month" into a hot loop. Delays and timeouts
 * are validated against it instead of being silently clamped.
 */
export const MAX_TIMER_MS = 2_147_483_647;

const ms = () => z.number().int().nonnegative().max(MAX_TIMER_MS, 'at most 2147483647 ms (about 24.8 days)');

/** Options every bus takes, whatever the transport. */
export const busOptionsShape = {
  /** Broker URL: `amqp://`, `kafka://`, `nats://`, `redis://`, `mqtt://`, `memory://`. */
  url: z.string().min(1),
  /** Client name shown by the broker (connection name, client id prefix). */
  name: z
    .string()
    .min(1)
    .max(100)
    .regex(/^[A-Za-z0-9_.-]+$/, 'use letters, digits, _ . -')
    .optional(),
  logger: loggerSchema.optional(),
  /** Reject bigger messages before sending. Default: the transport's limit. */
  maxPayloadBytes: z.number().int().positive().optional(),
  connectTimeoutMs: ms().positive().default(10_000),
  /** How long a publish waits for the broker's confirmation before failing with a retryable TimeoutError. */
  publishTimeoutMs: ms().positive().default(15_000),
  /** How long `close()` waits for in-flight handlers before releasing them for redelivery. */
  closeTimeoutMs: ms().default(10_000),
};

export const retrySchema = z
  .strictObject({
    /** Total handler runs, first one included. */
    maxAttempts: z.number().int().min(1).max(Number.MAX_SAFE_INTEGER).default(5),
    initialDelayMs: ms().default(200),
    maxDelayMs: ms().default(30_000),
    multiplier: z.number().min(1).max(100).default(2),
    /** Fraction of each delay that is randomised away: 0.5 means a delay in [d/2, d]. */
    jitter: z.number().min(0).max(1).default(0.5),
  })
  .refine((r) => r.maxDelayMs >= r.initialDelayMs, {
    message: 'maxDelayMs must be >= initialDelayMs',
    path: ['maxDelayMs'],
  });

export type RetryPolicy = z.output<typeof retrySchema>;

const storeSchema = z
  .custom<IdempotencyStore>(
    (v) =>
      typeof v === 'object' &&
      v !== null &&
      ['claim', 'complete', 'release'].every((m) => typeof (v as Record<string, unknown>)[m] === 'function'),
    { message: 'expected an IdempotencyStore (claim, complete, release)' },
  )
  .transform(guardStore);

/** The `idempotency` option of `subscribe` and `respond`: the same store, keys `group:messageId`. */
const idempotencySchema = z.strictObject({
  store: storeSchema,
  /** How long a processed id is remembered. */
  ttlMs: z
    .number()
    .int()
    .positive()
    .max(Number.MAX_SAFE_INTEGER)
    .default(7 * 24 * 3600_000),
  /** How long a claim protects a message being processed. Default: handlerTimeoutMs + 5 s. */
  leaseMs: ms().positive().optional(),
});

export type IdempotencyOptions = z.input<typeof idempotencySchema>;

/** `subscribeBatch` options besides the subscription's own: how a batch is formed. */
export const batchSchema = z
  .strictObject({
    /** At most this many messages per call. Default 100. */
    maxSize: z.number().int().min(1).max(10_000).default(100),
    /** A partial batch is handed over this long after its first message arrived. Default 50 ms. */
    maxWaitMs: ms().min(0).max(60_000).default(50),
  })
  .default({ maxSize: 100, maxWaitMs: 50 });

export type BatchOptions = z.input<typeof batchSchema>;
export type ResolvedBatchOptions = z.output<typeof batchSchema>;

const subscribeShape = z.strictObject({
  /** Competing consumers share a group (durable). Omit for a broadcast subscription. */
  group: z.string().optional(),
  /** Handlers running at once. Messages with the same key still run one after another. */
  concurrency: z.number().int().min(1).max(10_000).default(1),
  /** Unsettled messages held at once (broker prefetch). Default: max(100, 2 x concurrency). */
  prefetch: z.number().int().min(1).max(100_000).optional(),
  retry: z.union([z.literal(false), retrySchema]).default(() => retrySchema.parse({})),
  /** Dead-letter messages that exhausted their retries (default) or name the dead-letter topic. */
  deadLetter: z.union([z.boolean(), z.strictObject({ topic: z.string().min(1) })]).default(true),
  idempotency: idempotencySchema.optional(),
  /** A handler still running after this is failed (and its signal aborted); the message is retried. */
  handlerTimeoutMs: ms().positive().default(30_000),
  /** This subscription's own middleware, inside the bus's (`bus.use`), outermost first. */
  middleware: z
    .array(z.custom<ConsumeMiddleware>((v) => typeof v === 'function', { message: 'expected a middleware function' }))
    .optional(),
});

const needsGroup = (o: { idempotency?: unknown; group?: string | undefined }) =>
  o.idempotency === undefined || o.group !== undefined;
const needsGroupIssue = {
  message: 'idempotent consumers need a group (keys are group + message id)',
  path: ['idempotency'],
};

export const subscribeOptionsSchema = subscribeShape
  .refine((o) => o.prefetch === undefined || o.prefetch >= o.concurrency, {
    message: 'prefetch must be >= concurrency',
    path: ['prefetch'],
  })
  .refine(needsGroup, needsGroupIssue);

/** `subscribeBatch` options: a subscription's, with `batch` instead of `concurrency` (one batch runs at a time). */
export const subscribeBatchOptionsSchema = subscribeShape
  .omit({ concurrency: true })
  .extend({ batch: batchSchema })
  .refine((o) => o.prefetch === undefined || o.prefetch >= o.batch.maxSize, {
    message: 'prefetch must be >= batch.maxSize',
    path: ['prefetch'],
  })
  .refine(needsGroup, needsGroupIssue);

export type SubscribeBatchOptions = z.input<typeof subscribeBatchOptionsSchema> & {
  /** Aborting it closes the subscription (gracefully, like `close()`). */
  signal?: AbortSignal;
};

export type SubscribeOptions = z.input<typeof subscribeOptionsSchema> & {
  /** Aborting it closes the subscription (gracefully, like `close()`). */
  signal?: AbortSignal;
};
export type ResolvedSubscribeOptions = z.output<typeof subscribeOptionsSchema>;

/** `bus.respond()` options. */
export const respondOptionsSchema = z
  .strictObject({
    group: z.string().optional(),
    concurrency: z.number().int().min(1).max(10_000).default(1),
    handlerTimeoutMs: ms().positive().default(30_000),
    exposeStack: z.boolean().default(false),
    idempotency: idempotencySchema.optional(),
  })
  .refine((o) => o.idempotency === undefined || o.group !== undefined, {
    message: 'idempotent responders need a group (keys are group + request id)',
    path: ['idempotency'],
  });

export type ResolvedRespondOptions = z.output<typeof respondOptionsSchema>;
