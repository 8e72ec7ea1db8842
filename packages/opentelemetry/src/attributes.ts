import type { Attributes } from '@opentelemetry/api';

/**
 * OpenTelemetry messaging semantic-convention attribute names (semconv 1.27+),
 * spelled out here so the package depends on `@opentelemetry/api` alone.
 */
export const ATTR = {
  system: 'messaging.system',
  destination: 'messaging.destination.name',
  operationType: 'messaging.operation.type',
  operationName: 'messaging.operation.name',
  messageId: 'messaging.message.id',
  conversationId: 'messaging.message.conversation_id',
  group: 'messaging.consumer.group.name',
  batchCount: 'messaging.batch.message_count',
  partition: 'messaging.destination.partition.id',
  kafkaKey: 'messaging.kafka.message.key',
  kafkaOffset: 'messaging.kafka.offset',
  routingKey: 'messaging.rabbitmq.destination.routing_key',
  deliveryTag: 'messaging.rabbitmq.message.delivery_tag',
  errorType: 'error.type',
  /** busbar's own: 1 on first delivery, +1 per retry. */
  attempt: 'busbar.message.attempt',
  /** busbar's own: how a delivery ended (acked, retried, dead-lettered, ...). */
  outcome: 'busbar.outcome',
} as const;

type Raw = Record<string, unknown>;

const isRecord = (value: unknown): value is Raw => typeof value === 'object' && value !== null;

/**
 * Broker-specific attributes read from the native record, where the driver
 * exposes them: partition and offset (Kafka), routing key and delivery tag
 * (AMQP). Duck-typed so no driver package is imported.
 */
export function nativeAttributes(system: string, raw: unknown, into: Attributes): void {
  if (!isRecord(raw)) return;
  const partition = raw.partition;
  if (typeof partition === 'number' || typeof partition === 'string') into[ATTR.partition] = String(partition);
  if (system === 'kafka') {
    const offset = raw.offset;
    if (typeof offset === 'string' || typeof offset === 'number') into[ATTR.kafkaOffset] = Number(offset);
    else if (typeof offset === 'bigint') into[ATTR.kafkaOffset] = Number(offset);
  }
  if (system === 'rabbitmq' && isRecord(raw.fields)) {
    const { routingKey, deliveryTag } = raw.fields;
    if (typeof routingKey === 'string') into[ATTR.routingKey] = routingKey;
    if (typeof deliveryTag === 'number') into[ATTR.deliveryTag] = deliveryTag;
  }
}
