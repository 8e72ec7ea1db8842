import { ClosedError, type TimeoutError } from '@busbar/core';
import type { OutgoingRecord } from '@busbar/core/transport';
import type { IClientPublishOptions } from 'mqtt';

type QoS = 0 | 1 | 2;

import { toBuffer, type UserProperties, userProperties } from './codec.js';
import { publishError, publishTimeout } from './errors.js';
import type { Link } from './link.js';
import type { MqttOptions } from './options.js';
import { firstMatch, type TopicMap } from './topics.js';

/** A `publish()` call: settles when every one of its messages is acknowledged, or on the first failure. */
interface Batch {
  remaining: number;
  settled: boolean;
  readonly deadline: number;
  readonly resolve: () => void;
  readonly reject: (error: unknown) => void;
}

/** One message handed to mqtt.js (or waiting for a free in-flight slot). */
interface Item {
  readonly path: string;
  readonly payload: Buffer;
  readonly options: IClientPublishOptions;
  readonly batch: Batch;
}

/** Extra user properties the driver adds (retries). */
export type ExtraProperties = Readonly<Record<string, string>>;

interface TopicSettings {
  readonly path: string;
  readonly qos: QoS;
  readonly retain: boolean;
}

/**
 * Pipelines publishes over one connection: as many unacknowledged messages as
 * the broker's Receive Maximum allows (the rest wait here, in order), one
 * promise per `publish()` call, one timer for every pending call together.
 */
export class Publisher {
  readonly #link: Link;
  readonly #map: TopicMap;
  readonly #options: MqttOptions;
  readonly #timeoutMs: number;
  readonly #secrets: readonly string[];
  readonly #waiting: Item[] = [];
  readonly #batches = new Set<Batch>();
  readonly #settings = new Map<string, TopicSettings>();
  readonly #topicQos: [string, QoS][];
  #waitHead = 0;
  #inflight = 0;
  #drainQueued = false;
  #sweeper: NodeJS.Timeout | undefined;
  #closed = false;

  constructor(link: Link, map: TopicMap, options: MqttOptions, timeoutMs: number, secrets: readonly string[]) {
    this.#link = link;
    this.#map = map;
    this.#options = options;
    this.#timeoutMs = timeoutMs;
    this.#secrets = secrets;
    this.#topicQos = Object.entries(options.topicQos) as [string, QoS][];
  }

  /** QoS, retain flag and MQTT path of a busbar topic. */
  settings(topic: string): TopicSettings {
    let s = this.#settings.get(topic);
    if (s === undefined) {
      s = {
        path: this.#map.toPath(topic),
        qos: firstMatch(this.#topicQos, topic) ?? this.#options.qos,
        retain:
          firstMatch(
            this.#options.retainTopics.map((p) => [p, true] as const),
            topic,
          ) === true,
      };
      if (this.#settings.size < 10_000) this.#settings.set(topic, s);
    }
    return s;
  }

  publish(records: readonly OutgoingRecord[]): Promise<void> {
    if (this.#closed) return Promise.reject(new ClosedError('The MQTT transport is closed'));
    return new Promise<void>((resolve, reject) => {
      const batch = this.#batch(records.length, resolve, reject);
      for (const record of records) {
        const s = this.settings(record.topic);
        this.#submit(s.path, toBuffer(record.body), s.qos, s.retain, userProperties(record), record.contentType, batch);
      }
    });
  }

  /** Publishes one message to a raw MQTT path (retry topics), QoS 1, confirmed. */
  publishRaw(path: string, body: Uint8Array, props: UserProperties, contentType: string | undefined): Promise<void> {
    if (this.#closed) return Promise.reject(new ClosedError('The MQTT transport is closed'));
    return new Promise<void>((resolve, reject) => {
      this.#submit(path, toBuffer(body), 1, false, props, contentType, this.#batch(1, resolve, reject));
    });
  }

  #batch(count: number, resolve: () => void, reject: (error: unknown) => void): Batch {
    const batch: Batch = { remaining: count, settled: false, deadline: Date.now() + this.#timeoutMs, resolve, reject };
    if (count === 0) {
      resolve();
      return batch;
    }
    this.#batches.add(batch);
    if (this.#sweeper === undefined && this.#timeoutMs > 0) {
      const every = Math.max(20, Math.min(1_000, Math.floor(this.#timeoutMs / 10)));
      this.#sweeper = setInterval(() => this.#sweep(), every);
      this.#sweeper.unref();
    }
    return batch;
  }

  #submit(
    path: string,
    payload: Buffer,
    qos: QoS,
    retain: boolean,
    props: UserProperties,
    contentType: string | undefined,
    batch: Batch,
  ): void {
    const options: IClientPublishOptions = {
      qos,
      retain,
      properties: contentType ? { userProperties: props, contentType } : { userProperties: props },
    };
    const item: Item = { path, payload, options, batch };
    // QoS 0 does not count against the broker's Receive Maximum.
    if (qos === 0) this.#send(item, false);
    else if (this.#inflight < this.#window() && this.#waitHead === this.#waiting.length) this.#send(item, true);
    else this.#waiting.push(item);
  }

  #window(): number {
    return this.#options.maxInflight ?? this.#link.serverReceiveMaximum;
  }

  #send(item: Item, counted: boolean): void {
    if (counted) this.#inflight++;
    this.#link.client.publish(item.path, item.payload, item.options, (error) => {
      if (counted) this.#inflight--;
      const { batch } = item;
      if (!batch.settled) {
        if (error) this.#settle(batch, publishError(error, this.#secrets));
        else if (--batch.remaining === 0) this.#settle(batch, undefined);
      }
      // mqtt.js handles the PUBACKs of one socket read one by one (process.nextTick): refill the
      // window once they are all in, not once per PUBACK.
      if (counted && !this.#drainQueued && this.#waitHead < this.#waiting.length) {
        this.#drainQueued = true;
        queueMicrotask(this.#drain);
      }
    });
  }

  readonly #drain = (): void => {
    this.#drainQueued = false;
    const window = this.#window();
    while (this.#inflight < window && this.#waitHead < this.#waiting.length) {
      const item = this.#waiting[this.#waitHead++] as Item;
      // A timed-out or failed call's remaining messages are not sent at all.
      if (!item.batch.settled) this.#send(item, true);
    }
    if (this.#waitHead === this.#waiting.length) {
      this.#waiting.length = 0;
      this.#waitHead = 0;
    } else if (this.#waitHead > 1024) {
      this.#waiting.splice(0, this.#waitHead);
      this.#waitHead = 0;
    }
  };

  #settle(batch: Batch, error: unknown): void {
    batch.settled = true;
    this.#batches.delete(batch);
    if (error === undefined) batch.resolve();
    else batch.reject(error);
  }

  #sweep(): void {
    const now = Date.now();
    let timeout: TimeoutError | undefined;
    for (const batch of this.#batches) {
      if (batch.deadline <= now) {
        timeout ??= publishTimeout(this.#timeoutMs);
        this.#settle(batch, timeout);
      }
    }
    if (this.#batches.size === 0 && this.#sweeper) {
      clearInterval(this.#sweeper);
      this.#sweeper = undefined;
    }
  }

  /** Waits (bounded by the publish timeout) for pending publishes, then refuses new ones. */
  async flush(): Promise<void> {
    const deadline = Date.now() + Math.max(this.#timeoutMs, 1);
    while (this.#batches.size > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
    this.#closed = true;
    if (this.#sweeper) clearInterval(this.#sweeper);
    this.#sweeper = undefined;
    for (const batch of this.#batches)
      this.#settle(batch, new ClosedError('The MQTT transport closed before the broker acknowledged'));
  }
}
