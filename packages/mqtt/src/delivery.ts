import type { Delivery, RetryRequest } from '@busbar/core/transport';
import { HEADER, MAX_TIMER_MS } from '@busbar/core/transport';
import type { IPublishPacket } from 'mqtt';
import type { Inbound, ManualAcks } from './acks.js';
import { type DecodedFields, headerProperties, type UserProperties } from './codec.js';

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

/** A received MQTT message owned by core until it is acked, retried or released. */
export class MqttDelivery implements Delivery {
  readonly id: string;
  readonly topic: string;
  readonly key: string | undefined;
  readonly headers: Readonly<Record<string, string>>;
  readonly body: Uint8Array;
  readonly timestamp: number;
  /** MQTT 5's own Content Type property, as sent (undefined when absent or empty). */
  readonly contentType: string | undefined;
  readonly idGenerated: boolean;
  readonly attempt: number;
  readonly raw: IPublishPacket;
  readonly #fields: DecodedFields;
  readonly #acks: ManualAcks;
  readonly #inbound: Inbound;
  readonly #sink: RetrySink;
  #settled = false;

  constructor(
    topic: string,
    headers: Record<string, string>,
    fields: DecodedFields,
    packet: IPublishPacket,
    acks: ManualAcks,
    inbound: Inbound,
    sink: RetrySink,
  ) {
    this.id = fields.id;
    this.topic = topic;
    this.key = fields.key;
    this.headers = headers;
    this.body = fields.body;
    this.timestamp = fields.timestamp;
    this.contentType = packet.properties?.contentType || undefined;
    this.idGenerated = fields.idGenerated;
    this.attempt = fields.attempt;
    this.raw = packet;
    this.#fields = fields;
    this.#acks = acks;
    this.#inbound = inbound;
    this.#sink = sink;
  }

  ack(): Promise<void> {
    if (this.#settled) return Promise.resolve();
    this.#settled = true;
    return this.#acks.ack(this.#inbound);
  }

  async retry(request: RetryRequest): Promise<void> {
    if (this.#settled) return;
    // The republish must be confirmed before the source is PUBACKed; if it fails, core holds the message.
    await this.#sink.retry(this.topic, this.raw.topic, this.#fields, this.raw.properties?.contentType, request);
    this.#settled = true;
    await this.#acks.ack(this.#inbound);
  }

  async release(): Promise<void> {
    if (this.#settled) return;
    this.#settled = true;
    this.#acks.release(this.#inbound, this.#sink.redeliverOnRelease);
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
