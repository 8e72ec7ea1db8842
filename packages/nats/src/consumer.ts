import type {
  Delivery,
  Logger,
  RetryRequest,
  SubscribeCallbacks,
  SubscribeSpec,
  TransportSubscription,
} from '@busbar/core/transport';
import { topicMatches } from '@busbar/core/transport';
import { type ConsumerMessages, DeliverPolicy, type JetStreamClient, type JsMsg } from 'nats';
import { decode, SOURCE_SEQ } from './codec.js';
import { consumerName } from './names.js';
import type { Topology } from './topology.js';

export interface ConsumerContext {
  readonly js: JetStreamClient;
  readonly topology: Topology;
  readonly logger: Logger;
  readonly ackWaitMs: number;
  readonly pullExpiresMs: number;
  /** False while the connection is down: missed heartbeats then mean nothing. */
  readonly connected: () => boolean;
}

/**
 * One JetStream message handed to core. A class, not an object of closures: four closures per message were a
 * measurable part of consume. `held` is the group member's set of unsettled deliveries (undefined for a
 * broadcast subscription, whose ordered consumer takes no acks).
 */
class NatsDelivery implements Delivery {
  readonly id: string;
  readonly topic: string;
  readonly key: string | undefined;
  readonly headers: Readonly<Record<string, string>>;
  readonly body: Uint8Array;
  readonly timestamp: number;
  readonly attempt: number;
  readonly raw: JsMsg;
  readonly #held: Set<NatsDelivery> | undefined;
  readonly #stream: string;
  readonly #sequence: number;
  #settled = false;

  constructor(m: JsMsg, held: Set<NatsDelivery> | undefined) {
    const d = decode(m);
    this.id = d.id;
    this.topic = m.subject;
    this.key = d.key;
    this.headers = d.headers;
    this.body = m.data;
    this.timestamp = d.timestamp;
    this.attempt = d.attempt;
    this.raw = m;
    this.#held = held;
    this.#stream = d.stream;
    this.#sequence = d.sequence;
  }

  /** The stream position, for its dead letter (a retry is the same stream message, nak'd). */
  deadLetterHeaders(): Readonly<Record<string, string>> {
    return { [SOURCE_SEQ]: `${this.#stream}:${this.#sequence}` };
  }

  /** True the first time: a delivery is settled once; later calls are no-ops. */
  #settle(): boolean {
    if (this.#settled || this.#held === undefined) return false;
    this.#settled = true;
    this.#held.delete(this);
    return true;
  }

  // nats.js throws (a closed connection) rather than rejecting: these turn that into a rejection.
  ack(): Promise<void> {
    return this.#settle() ? attempt(() => this.raw.ack()) : done;
  }

  retry(request: RetryRequest): Promise<void> {
    return this.#settle() ? attempt(() => this.raw.nak(request.delayMs)) : done;
  }

  release(): Promise<void> {
    return this.#settle() ? attempt(() => this.raw.nak()) : done;
  }
}

const done = Promise.resolve();

function attempt(send: () => void): Promise<void> {
  try {
    send();
    return done;
  } catch (error) {
    return Promise.reject(error);
  }
}

/**
 * A group member: the group's durable pull consumer (explicit ack,
 * `max_ack_pending` = prefetch) consumed with `consume()`. Every message busbar
 * still holds gets `working()` every third of the ack wait, so a slow handler
 * keeps its message. Missed heartbeats or a vanished consumer re-create the
 * consumer and the pull loop (nats.node#590).
 */
export async function subscribeGroup(
  ctx: ConsumerContext,
  spec: SubscribeSpec,
  callbacks: SubscribeCallbacks,
): Promise<TransportSubscription> {
  const group = spec.group as string;
  const stream = await ctx.topology.ensureStream(spec.topic);
  const name = consumerName(spec.topic, group);
  const { filter, exact } = ctx.topology.filterFor(spec.topic, stream);
  const settings = { ackWaitMs: ctx.ackWaitMs, maxAckPending: spec.prefetch, update: true };
  await ctx.topology.ensureConsumer(stream, name, filter, settings);

  const held = new Set<NatsDelivery>();
  let active = true;
  let messages: ConsumerMessages | undefined;
  let restarting: Promise<void> | undefined;

  const onMessage = (m: JsMsg): void => {
    if (!active) {
      m.nak();
      return;
    }
    if (!exact && !topicMatches(spec.topic, m.subject)) {
      m.ack();
      return;
    }
    const delivery = new NatsDelivery(m, held);
    held.add(delivery);
    callbacks.onDelivery(delivery);
  };

  const start = async (): Promise<void> => {
    const consumer = await ctx.js.consumers.get(stream, name);
    const current = await consumer.consume({
      max_messages: spec.prefetch,
      expires: ctx.pullExpiresMs,
      callback: onMessage,
    });
    messages = current;
    void watch(current);
  };

  const restart = (why: string): void => {
    if (!active || restarting) return;
    ctx.logger.warn(`NATS consumer '${name}' on '${stream}' ${why}: re-creating it`);
    const old = messages;
    restarting = (async () => {
      await old?.close().catch(() => undefined);
      await ctx.topology.consumerInfo(stream, name).catch(() => undefined);
      for (let wait = 250; active; wait = Math.min(wait * 2, 5_000)) {
        try {
          ctx.topology.forget(spec.topic);
          const s = await ctx.topology.ensureStream(spec.topic);
          await ctx.topology.ensureConsumer(s, name, filter, settings);
          await start();
          return;
        } catch (error) {
          callbacks.onError(error instanceof Error ? error : new Error(String(error)));
          await new Promise((resolve) => setTimeout(resolve, wait));
        }
      }
    })().finally(() => {
      restarting = undefined;
    });
  };

  const watch = async (current: ConsumerMessages): Promise<void> => {
    for await (const status of await current.status()) {
      if (!active || messages !== current) return;
      const type = String(status.type);
      if (type === 'heartbeats_missed' && ctx.connected() && Number(status.data) >= 2) restart('missed its heartbeats');
      else if (type === 'consumer_not_found' || type === 'consumer_deleted' || type === 'stream_not_found')
        restart('was not found');
    }
  };

  await start();

  // One timer per subscription: keeps every held message's ack deadline ahead of its handler.
  const every = Math.max(250, Math.floor(ctx.ackWaitMs / 3));
  const keepAlive = setInterval(() => {
    for (const d of held) d.raw.working();
  }, every);
  keepAlive.unref();

  return {
    stop: async () => {
      active = false;
      await restarting;
      // Stop pulling at once: a live pull loop would take back every message core releases (a nak storm).
      // A message the server sent in the last round trip is dropped with the inbox and returns after the ack wait.
      await messages?.close().catch(() => undefined);
      // nats-server 2.9 loses a nak'd message popped for a stale pull request (one whose inbox is gone) and
      // delivers the next one twice; a consumer info makes the server drop stale requests before core releases.
      await ctx.topology.consumerInfo(stream, name).catch(() => undefined);
    },
    close: async () => {
      active = false;
      clearInterval(keepAlive);
      await messages?.close().catch(() => undefined);
      held.clear();
    },
  };
}

/** A broadcast subscription: an ordered (ephemeral, unacked) consumer from the next message on. */
export async function subscribeBroadcast(
  ctx: ConsumerContext,
  spec: SubscribeSpec,
  callbacks: SubscribeCallbacks,
): Promise<TransportSubscription> {
  const stream = await ctx.topology.ensureStream(spec.topic);
  const { filter, exact } = ctx.topology.filterFor(spec.topic, stream);
  const consumer = await ctx.js.consumers.get(stream, {
    ...(filter === undefined ? {} : { filterSubjects: filter }),
    deliver_policy: DeliverPolicy.New,
  });
  let active = true;
  const messages = await consumer.consume({
    max_messages: spec.prefetch,
    expires: ctx.pullExpiresMs,
    callback: (m) => {
      if (!active) return;
      if (!exact && !topicMatches(spec.topic, m.subject)) return;
      callbacks.onDelivery(new NatsDelivery(m, undefined));
    },
  });
  return {
    stop: async () => {
      active = false;
    },
    close: async () => {
      active = false;
      await messages.close().catch(() => undefined);
    },
  };
}
