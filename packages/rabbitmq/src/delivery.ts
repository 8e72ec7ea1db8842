import type { Delivery, RetryRequest } from '@busbar/core/transport';
import type { ConsumeMessage } from 'amqplib';
import type { ChannelAcks } from './acks.js';
import type { Incoming } from './codec.js';

/** Where a delivery's retry goes: its consumer, which puts a copy on its delayed way back to `queue`. */
export interface RetrySink {
  retryTo(queue: string, delivery: RabbitDelivery, request: RetryRequest): Promise<void>;
}

/** A delivery from one channel; its settle methods act on that channel only. */
export class RabbitDelivery implements Delivery {
  readonly id: string;
  readonly topic: string;
  readonly key: string | undefined;
  readonly headers: Readonly<Record<string, string>>;
  readonly body: Uint8Array;
  readonly timestamp: number;
  readonly contentType: string | undefined;
  readonly idGenerated: boolean;
  readonly attempt: number;
  readonly raw: ConsumeMessage;
  readonly #acks: ChannelAcks;
  readonly #sink: RetrySink;
  readonly #queue: string;

  constructor(message: ConsumeMessage, incoming: Incoming, acks: ChannelAcks, sink: RetrySink, queue: string) {
    this.id = incoming.id;
    this.topic = incoming.topic;
    this.key = incoming.key;
    this.headers = incoming.headers;
    this.body = incoming.body;
    this.timestamp = incoming.timestamp;
    this.contentType = incoming.contentType;
    this.idGenerated = incoming.idGenerated;
    this.attempt = incoming.attempt;
    this.raw = message;
    this.#acks = acks;
    this.#sink = sink;
    this.#queue = queue;
  }

  ack(): Promise<void> {
    return this.#acks.ack(this.raw.fields.deliveryTag);
  }

  async retry(request: RetryRequest): Promise<void> {
    // Nothing to do on a dead channel: the broker redelivers the original anyway.
    if (!this.#acks.alive) return this.#acks.ack(this.raw.fields.deliveryTag);
    await this.#sink.retryTo(this.#queue, this, request);
    await this.#acks.ack(this.raw.fields.deliveryTag);
  }

  async release(): Promise<void> {
    this.#acks.nack(this.raw.fields.deliveryTag, true);
  }
}
