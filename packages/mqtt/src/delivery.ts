import type { BusbarError } from '@busbar/core';
import type { NativeErrorContext, RetryRequest } from '@busbar/core/transport';
import { HEADER, MAX_TIMER_MS, SettleOnce } from '@busbar/core/transport';
import type { IPublishPacket } from 'mqtt';
import type { Inbound, ManualAcks } from './acks.js';
import { type DecodedFields, headerProperties, type UserProperties } from './codec.js';
import { toBusbarError } from './errors.js';

/** What a delivery needs from its subscription to retry: republish to the group's retry topic, confirmed. */
export interface RetrySink {
  retry(
    topic: string,
    path: string,
    fields: DecodedFields,
    contentType: string | undefined,
    request: RetryRequest,
  ): Promise<void>;
  /** Whether a released message should be fetched back now (reconnect) or left for the next session resume. */
  readonly redeliverOnRelease: boolean;
}

/** A received MQTT message owned by core until it is acked, retried or released (exactly one, once: SettleOnce). */
export class MqttDelivery extends SettleOnce<IPublishPacket> {
  readonly #fields: DecodedFields;
  readonly #acks: ManualAcks;
  readonly #inbound: Inbound;
  readonly #sink: RetrySink;

  constructor(
    topic: string,
    headers: Record<string, string>,
    fields: DecodedFields,
    packet: IPublishPacket,
    acks: ManualAcks,
    inbound: Inbound,
    sink: RetrySink,
  ) {
    // MQTT 5's own Content Type property, as sent (undefined when absent or empty).
    super(
      {
        id: fields.id,
        topic,
        key: fields.key,
        headers,
        body: fields.body,
        timestamp: fields.timestamp,
        contentType: packet.properties?.contentType || undefined,
        idGenerated: fields.idGenerated,
        attempt: fields.attempt,
      },
      packet,
    );
    this.#fields = fields;
    this.#acks = acks;
    this.#inbound = inbound;
    this.#sink = sink;
  }

  protected ackNative(): Promise<void> | undefined {
    return this.#acks.ack(this.#inbound);
  }

  protected async retryNative(request: RetryRequest): Promise<void> {
    // The republish must be confirmed before the source is PUBACKed; if it fails, core holds the message.
    await this.#sink.retry(this.topic, this.raw.topic, this.#fields, this.raw.properties?.contentType, request);
    await this.#acks.ack(this.#inbound);
  }

  protected releaseNative(): undefined {
    this.#acks.release(this.#inbound, this.#sink.redeliverOnRelease);
    return undefined;
  }

  protected override mapError(error: unknown, context: NativeErrorContext): BusbarError {
    return toBusbarError(error, context);
  }
}

/** User properties of a retried message: the headers core asks for plus id, key, timestamp, attempt and due time. */
export function retryProperties(
  topic: string,
  fields: DecodedFields,
  request: RetryRequest,
  now: number,
): UserProperties {
  const props = headerProperties(request.headers);
  delete props[HEADER.id];
  delete props[HEADER.timestamp];
  props[HEADER.mqttMeta] = `${fields.timestamp} ${fields.id}`;
  if (fields.key !== undefined) props[HEADER.key] = fields.key;
  props[HEADER.attempt] = String(request.attempt);
  props[HEADER.topic] = topic;
  // Core bounds delays; a NaN or overlong one must still not become an instant or endless hold.
  const delay = Number.isNaN(request.delayMs) ? 0 : Math.min(Math.max(0, request.delayMs), MAX_TIMER_MS);
  props[HEADER.due] = String(now + delay);
  return props;
}
