import { ClosedError, InvalidTopicError, PublishError, TimeoutError } from '@busbar/core';
import type { OutgoingRecord } from '@busbar/core/transport';
import type { IClientPublishOptions } from 'mqtt';

type QoS = 0 | 1 | 2;

import { toBuffer, type UserProperties, userProperties } from './codec.js';
import { toBusbarError } from './errors.js';
import type { Link } from './link.js';
import type { MqttOptions } from './options.js';
import { guardAgainstPoison } from './poison.js';
import { checkContentType, checkPacketSize, publishPacketBytes, safeProperties, stringProblem } from './properties.js';
import { firstMatch, type TopicMap } from './topics.js';
import { UnmatchedPublishes } from './unmatched.js';

/** Pause before a message no subscription matched after a reconnect is sent again (see UnmatchedPublishes). */
const RESEND_UNMATCHED_MS = 100;

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

/** A message checked and ready for mqtt.js. */
interface Prepared {
  readonly path: string;
  readonly payload: Buffer;
  readonly qos: QoS;
  readonly retain: boolean;
  readonly props: UserProperties;
  readonly contentType: string | undefined;
  readonly native?: NativeProperties | undefined;
}

/** MQTT 5 request/reply properties (see requests.ts). */
export interface NativeProperties {
  readonly responseTopic?: string;
  readonly correlationData?: Buffer;
  /** Seconds the broker may keep the message for a subscriber that has not received it yet. */
  readonly messageExpiryInterval?: number;
}

function hasKeys(props: UserProperties): boolean {
  for (const _ in props) return true;
  return false;
}

/** The MQTT 5 properties of one PUBLISH (the common case, busbar's own publish, without copying). */
function publishProperties(p: Prepared): NonNullable<IClientPublishOptions['properties']> {
  // mqtt.js never sends (nor fails) a PUBLISH with an empty user property object: it is left out.
  const props: NonNullable<IClientPublishOptions['properties']> = p.native === undefined ? {} : { ...p.native };
  if (hasKeys(p.props)) props.userProperties = p.props;
  if (p.contentType) props.contentType = p.contentType;
  return props;
}

/** Bytes the native properties add to a PUBLISH packet. */
function nativeBytes(native: NativeProperties | undefined): number {
  if (native === undefined) return 0;
  let n = 0;
  if (native.responseTopic !== undefined) n += 3 + Buffer.byteLength(native.responseTopic);
  if (native.correlationData !== undefined) n += 3 + native.correlationData.byteLength;
  if (native.messageExpiryInterval !== undefined) n += 5;
  return n;
}

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
  readonly #unmatched: UnmatchedPublishes;

  constructor(link: Link, map: TopicMap, options: MqttOptions, timeoutMs: number, secrets: readonly string[]) {
    this.#link = link;
    this.#map = map;
    this.#options = options;
    this.#timeoutMs = timeoutMs;
    this.#secrets = secrets;
    this.#topicQos = Object.entries(options.topicQos) as [string, QoS][];
    guardAgainstPoison(link.client);
    this.#unmatched = new UnmatchedPublishes(link.client, options.resendUnmatchedMs);
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
    let prepared: Prepared[];
    try {
      // Every message of the call is checked before any is sent: a bad one fails the call, typed, alone.
      prepared = records.map((record) => this.#prepare(record));
    } catch (error) {
      return Promise.reject(error);
    }
    return new Promise<void>((resolve, reject) => {
      const batch = this.#batch(prepared.length, resolve, reject);
      for (const p of prepared) this.#submit(p, batch);
    });
  }

  #prepare(record: OutgoingRecord): Prepared {
    const s = this.settings(record.topic);
    return this.#check(record.topic, {
      path: s.path,
      payload: toBuffer(record.body),
      qos: s.qos,
      retain: s.retain,
      props: userProperties(record),
      contentType: record.contentType,
    });
  }

  /** What the broker would answer by dropping the connection becomes this message's typed error instead. */
  #check(topic: string, p: Prepared): Prepared {
    checkContentType(p.contentType);
    const props = safeProperties(p.props);
    const max = this.#link.maximumPacketSize;
    if (max !== undefined) {
      const bytes =
        publishPacketBytes(p.path, p.qos, props, p.contentType, p.payload.byteLength) + nativeBytes(p.native);
      checkPacketSize(topic, bytes, max);
    }
    return props === p.props ? p : { ...p, props };
  }

  /** Publishes one message to a raw MQTT path (retry topics, requests, replies), QoS 1, confirmed. */
  publishRaw(
    path: string,
    body: Uint8Array,
    props: UserProperties,
    contentType: string | undefined,
    native?: NativeProperties,
  ): Promise<void> {
    if (this.#closed) return Promise.reject(new ClosedError('The MQTT transport is closed'));
    let prepared: Prepared;
    try {
      const problem = stringProblem(path);
      if (problem) throw new InvalidTopicError(`The MQTT topic '${path.slice(0, 80)}' ${problem}`);
      if (native?.responseTopic !== undefined) {
        const bad = stringProblem(native.responseTopic);
        if (bad) throw new InvalidTopicError(`The MQTT response topic '${native.responseTopic.slice(0, 80)}' ${bad}`);
      }
      prepared = this.#check(path, {
        path,
        payload: toBuffer(body),
        qos: 1,
        retain: false,
        props,
        contentType,
        native,
      });
    } catch (error) {
      return Promise.reject(error);
    }
    return new Promise<void>((resolve, reject) => {
      this.#submit(prepared, this.#batch(1, resolve, reject));
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

  #submit(p: Prepared, batch: Batch): void {
    const options: IClientPublishOptions = {
      qos: p.qos,
      retain: p.retain,
      properties: publishProperties(p),
    };
    const item: Item = { path: p.path, payload: p.payload, options, batch };
    // QoS 0 does not count against the broker's Receive Maximum.
    if (p.qos === 0) this.#send(item, false);
    else if (this.#inflight < this.#window() && this.#waitHead === this.#waiting.length) this.#send(item, true);
    else this.#waiting.push(item);
  }

  #window(): number {
    return this.#options.maxInflight ?? this.#link.serverReceiveMaximum;
  }

  #send(item: Item, counted: boolean): void {
    if (counted) this.#inflight++;
    let done = false;
    const onDone = (error?: Error) => {
      if (done) return;
      done = true;
      if (counted) this.#inflight--;
      const { batch } = item;
      if (!batch.settled && !error && this.#unmatched.takeResend(item.options.properties)) {
        // Confirmed into a void right after a reconnect: the group may not have subscribed again yet.
        setTimeout(() => this.#resend(item), RESEND_UNMATCHED_MS).unref();
      } else if (!batch.settled) {
        if (error)
          this.#settle(
            batch,
            toBusbarError(error, { what: `Publish to '${item.path}'`, op: 'publish', secrets: this.#secrets }),
          );
        else if (--batch.remaining === 0) this.#settle(batch, undefined);
      }
      // mqtt.js handles the PUBACKs of one socket read one by one (process.nextTick): refill the
      // window once they are all in, not once per PUBACK.
      if (counted && !this.#drainQueued && this.#waitHead < this.#waiting.length) {
        this.#drainQueued = true;
        queueMicrotask(this.#drain);
      }
    };
    try {
      this.#link.client.publish(item.path, item.payload, item.options, onDone);
    } catch (error) {
      // Whatever the checks above missed fails this message, not the caller's stack or the process.
      onDone(
        new PublishError(`mqtt.js could not send the message: ${(error as Error)?.message}`, { retryable: false }),
      );
    }
  }

  /** Sends `item` again (its call still waits), behind the messages already waiting for a slot. */
  #resend(item: Item): void {
    if (item.batch.settled) return;
    if (this.#inflight < this.#window() && this.#waitHead === this.#waiting.length) this.#send(item, true);
    else this.#waiting.push(item);
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
        timeout ??= new TimeoutError(
          `MQTT publish not acknowledged within ${this.#timeoutMs} ms (the broker may still have it)`,
        );
        this.#settle(batch, timeout);
      }
    }
    if (this.#batches.size === 0 && this.#sweeper) {
      clearInterval(this.#sweeper);
      this.#sweeper = undefined;
    }
  }

  /**
   * Waits for pending publishes until `deadline` (default: one publish timeout from now), and only while
   * connected (offline, mqtt.js cannot send them), then refuses new ones and fails what is left.
   */
  async flush(deadline = Date.now() + Math.max(this.#timeoutMs, 1)): Promise<void> {
    this.#closed = true;
    while (this.#batches.size > 0 && Date.now() < deadline && this.#link.client.connected) {
      await new Promise((r) => setTimeout(r, 10));
    }
    if (this.#sweeper) clearInterval(this.#sweeper);
    this.#sweeper = undefined;
    for (const batch of this.#batches)
      this.#settle(batch, new ClosedError('The MQTT transport closed before the broker acknowledged'));
  }
}
