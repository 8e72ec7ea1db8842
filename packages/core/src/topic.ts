import type { CloudEventOptions } from './cloudevents.js';
import { type Codec, jsonCodec } from './codec.js';
import { ConfigError, InvalidTopicError } from './errors.js';
import { assertTopicName } from './names.js';
import type { InferOutput, StandardSchemaV1 } from './schema.js';

const TOPIC = Symbol.for('busbar.topic');

/** A named topic with an optional payload schema and a codec; created by {@link defineTopic}. */
export interface Topic<T = unknown, R = unknown> {
  readonly name: string;
  readonly schema: StandardSchemaV1<unknown, T> | undefined;
  readonly codec: Codec<T>;
  /** For request/reply: the schema of the reply (validated on both sides), when given. */
  readonly response: StandardSchemaV1<unknown, R> | undefined;
  /** Publish every message of this topic as a CloudEvent with these attributes (binary mode). */
  readonly cloudEvent: CloudEventOptions | undefined;
  readonly [TOPIC]: true;
}

export interface TopicOptions<T, R = unknown> {
  /** How payloads become bytes. Default: JSON. */
  codec?: Codec<T>;
  /** For request/reply: the reply's schema; it types `bus.request()` and `bus.respond()` handlers. */
  response?: StandardSchemaV1<unknown, R>;
  /** Publish every message of this topic as a CloudEvent (binary mode): at least `type` and `source`. */
  cloudEvent?: CloudEventOptions;
}

/**
 * Declares a topic. The schema (zod, valibot, anything Standard Schema) checks
 * payloads before publishing and after receiving, and types the handler.
 *
 * ```ts
 * const OrderCreated = defineTopic('orders.created', z.object({ orderId: z.string() }));
 * ```
 */
export function defineTopic<S extends StandardSchemaV1, R = unknown>(
  name: string,
  schema: S,
  options?: TopicOptions<InferOutput<S>, R>,
): Topic<InferOutput<S>, R>;
export function defineTopic<T = unknown, R = unknown>(
  name: string,
  schema?: undefined,
  options?: TopicOptions<T, R>,
): Topic<T, R>;
export function defineTopic(
  name: string,
  schema?: StandardSchemaV1,
  options: TopicOptions<unknown> = {},
): Topic<unknown> {
  assertTopicName(name, 'subscribe');
  // Checked here, not at the first publish: a JavaScript caller passing `{ schema }` or a zod v3 schema (no
  // `~standard`) would otherwise learn it from a validation error on every message.
  if (schema != null && typeof (schema as Partial<StandardSchemaV1>)?.['~standard']?.validate !== 'function') {
    throw new ConfigError(
      `defineTopic('${name}'): the schema must be a Standard Schema (zod 3.24+, valibot, arktype, ...)`,
    );
  }
  return Object.freeze({
    name,
    schema: schema ?? undefined,
    codec: options.codec ?? jsonCodec,
    cloudEvent: options.cloudEvent,
    response: options.response,
    [TOPIC]: true as const,
  });
}

export function isTopic(value: unknown): value is Topic {
  return typeof value === 'object' && value !== null && (value as Record<symbol, unknown>)[TOPIC] === true;
}

/** A topic object, or a plain name (JSON codec, no schema). */
export type TopicLike<T = unknown> = Topic<T> | string;

const plainTopics = new Map<string, Topic>();

export function toTopic<T>(topic: TopicLike<T>): Topic<T> {
  if (typeof topic !== 'string') {
    if (!isTopic(topic)) {
      const got = topic === null ? 'null' : typeof topic;
      throw new InvalidTopicError(`Expected a topic from defineTopic() or a topic name, got ${got}`);
    }
    return topic;
  }
  let known = plainTopics.get(topic);
  if (!known) {
    known = defineTopic(topic);
    if (plainTopics.size < 10_000) plainTopics.set(topic, known);
  }
  return known as Topic<T>;
}
