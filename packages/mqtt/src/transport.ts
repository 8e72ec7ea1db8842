import { randomUUID } from 'node:crypto';
import type {
  Capabilities,
  OutgoingRecord,
  SubscribeCallbacks,
  SubscribeSpec,
  Transport,
  TransportContext,
  TransportSubscription,
} from '@busbar/core/transport';
import { sanitizeError } from '@busbar/core/transport';
import {
  type ConsumerHost,
  freeMember,
  memberFamily,
  openSubscription,
  subscribeOnce,
  takeMember,
} from './consumer.js';
import { takeOverPubacks } from './internals.js';
import { hasDefaultName, Link } from './link.js';
import type { MqttOptions } from './options.js';
import { Publisher } from './publisher.js';
import { MqttRequestReply } from './requests.js';
import { TopicMap } from './topics.js';

const capabilities: Capabilities = {
  durableGroups: true,
  // Shared subscriptions hand messages round-robin to members and retries are republished: no per-key order.
  ordering: false,
  wildcards: true,
};

/** `mqtt://`, `mqtts://`, `ws://`, `wss://`: MQTT 5 on mqtt.js (tested against Mosquitto 2). */
export class MqttTransport implements Transport {
  readonly capabilities = capabilities;
  /** The MQTT 5 CloudEvents binding: attributes are user properties under their own names, no prefix. */
  readonly cloudEventsPrefix = '';
  readonly #maxPayloadBytes: number;
  readonly #ctx: TransportContext<MqttOptions>;
  readonly #map: TopicMap;
  readonly #link: Link;
  readonly #publisher: Publisher;
  readonly #host: ConsumerHost;
  /** MQTT 5 Response Topic + Correlation Data (see requests.ts). */
  readonly requestReply: MqttRequestReply;
  /** Declared group sessions (family -> topic and group), re-declared after every reconnect. */
  readonly #declared = new Map<string, { topic: string; group: string }>();
  /** Declarations under way (family -> whether it declared): concurrent callers share one. */
  readonly #declaring = new Map<string, Promise<boolean>>();
  #warned = false;

  constructor(ctx: TransportContext<MqttOptions>) {
    this.#ctx = ctx;
    const { options } = ctx;
    this.#maxPayloadBytes = options.maxPayloadBytes;
    this.#map = new TopicMap(options.topicPrefix, options.retryTopicPrefix);
    const base = options.clientIdBase ?? ctx.bus.name;
    const will = options.will;
    this.#link = new Link(ctx, {
      clientId: `${base}:pub:${randomUUID().slice(0, 8)}`,
      clean: true,
      receiveMaximum: 100,
      name: 'publisher',
      ...(will
        ? {
            will: {
              topic: this.#map.toPath(will.topic),
              payload: Buffer.from(will.payload),
              qos: will.qos,
              retain: will.retain,
            },
          }
        : {}),
    });
    this.#publisher = new Publisher(this.#link, this.#map, options, ctx.bus.publishTimeoutMs, ctx.secrets);
    this.#host = { ctx, map: this.#map, publisher: this.#publisher, base };
    this.requestReply = new MqttRequestReply(ctx, this.#map, this.#publisher, base);
  }

  /** The configured limit, lowered to what the broker's Maximum Packet Size leaves for body and properties. */
  get maxPayloadBytes(): number {
    const packet = this.#link.maximumPacketSize;
    // Room for the fixed header, the topic and busbar's own properties.
    return packet === undefined ? this.#maxPayloadBytes : Math.min(this.#maxPayloadBytes, Math.max(0, packet - 2_048));
  }

  validateTopic(topic: string): void {
    this.#map.validate(topic);
  }

  async connect(): Promise<void> {
    await this.#link.connect();
    // Mosquitto 2.0 restores sessions but not their shared subscriptions after a restart: declare
    // again whenever the connection comes back (the publisher cannot tell a restart from a blip).
    // Attached after the first CONNACK: every event from here on is a reconnect.
    this.#link.client.on('connect', () => {
      for (const [family, { topic, group }] of this.#declared) {
        this.#declareOnce(family, topic, group).catch((error: unknown) => {
          this.#ctx.logger.warn(`Re-declaring group '${group}' on '${topic}' failed`, {
            error: sanitizeError(error, this.#ctx.secrets),
          });
        });
      }
    });
  }

  publish(records: readonly OutgoingRecord[]): Promise<void> {
    return this.#publisher.publish(records);
  }

  async subscribe(spec: SubscribeSpec, callbacks: SubscribeCallbacks): Promise<TransportSubscription> {
    if (spec.group !== undefined) {
      this.#warnUnstableId();
      // A declaration holds member 0 for a moment: wait, so this member resumes the session that holds the
      // group's messages instead of becoming member 1 beside an offline member 0 the broker keeps feeding.
      await this.#declaring.get(memberFamily(this.#host.base, spec.group, spec.topic))?.catch(() => undefined);
    }
    return openSubscription(this.#host, spec, callbacks);
  }

  /**
   * Creates (or refreshes) the session of member 0 of `group` on `topic`:
   * connect with its client id, clean start off, subscribe QoS 1 to the shared
   * subscription, disconnect. The broker then queues the group's messages for
   * that session until a member 0 resumes it.
   */
  async declareGroup(topic: string, group: string): Promise<void> {
    const family = memberFamily(this.#host.base, group, topic);
    if (this.#declared.has(family)) return;
    if (await this.#declareOnce(family, topic, group)) this.#declared.set(family, { topic, group });
  }

  #declareOnce(family: string, topic: string, group: string): Promise<boolean> {
    let pending = this.#declaring.get(family);
    if (pending === undefined) {
      pending = this.#declare(family, topic, group).finally(() => this.#declaring.delete(family));
      this.#declaring.set(family, pending);
    }
    return pending;
  }

  async #declare(family: string, topic: string, group: string): Promise<boolean> {
    // Member 0 is live in this process: the session exists and must not be taken over.
    if (takeMember(family, 0) === undefined) return false;
    const link = new Link(this.#ctx, {
      clientId: `${family}:0`,
      clean: false,
      receiveMaximum: 1,
      name: `declare ${topic} (${group})`,
      quiet: true,
    });
    // Messages the session already holds arrive now: they are neither delivered nor acked.
    takeOverPubacks(link.client, () => 'hold');
    try {
      await link.connect();
      const filter = TopicMap.shared(group, this.#map.toPath(topic));
      await subscribeOnce(link, filter);
      return true;
    } finally {
      await link.close(true).catch(() => undefined);
      freeMember(family, 0);
    }
  }

  /**
   * Flushes pending publishes and disconnects, within `deadline` (ms since the epoch) when core passes one,
   * else within the publish timeout. A broker that is down cuts both waits short (see Publisher.flush).
   */
  async close(deadline?: number): Promise<void> {
    const end = deadline ?? Date.now() + Math.max(this.#ctx.bus.publishTimeoutMs, 1);
    await this.requestReply.close();
    await this.#publisher.flush(end);
    await this.#link.close(true, Math.min(5_000, end - Date.now()));
  }

  #warnUnstableId(): void {
    if (this.#warned || !hasDefaultName(this.#ctx)) return;
    this.#warned = true;
    this.#ctx.logger.warn(
      'MQTT group sessions are named after the bus name, which defaults to one per process id: set `name` (or `clientIdBase`) to a value stable across restarts. Until then these sessions expire 5 minutes after the process ends, and the messages the broker handed them are lost',
    );
  }
}
