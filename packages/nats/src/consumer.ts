import type { RetryRequest, SubscribeCallbacks, SubscribeSpec, TransportSubscription } from '@busbar/core/transport';
import { DEAD_LETTER_READER_GROUP, isPattern, topicMatches } from '@busbar/core/transport';
import { DeliverPolicy, type JsMsg } from 'nats';
import { decode } from './codec.js';
import { type Holder, NatsDelivery, quietly } from './delivery.js';
import { consumerName, toSubject } from './names.js';
import { type ConsumerContext, PullLoop } from './pull.js';
import {
  type CopyFacts,
  fromRetryCopy,
  RETRY_STREAM_KEY,
  retryConsumerName,
  retryCopy,
  retrySubject,
} from './retry.js';

export type { ConsumerContext } from './pull.js';

/** What a group member needs beyond the consumer context: publishing retry copies. */
export interface GroupContext extends ConsumerContext {
  readonly publishCopy: (record: ReturnType<typeof retryCopy>) => Promise<void>;
}

/** The retry consumer's ack window: not-yet-due copies wait in it (nak'd with their delay), not in the group's. */
const MIN_RETRY_WINDOW = 1_000;
/**
 * The retry consumer's ack wait, at most. nats-server 2.9 can hand a copy that comes due during a close to
 * the closed member's stale pull request, and only the ack wait brings it back; copies busbar holds get
 * `working()` every third of it, so a short one costs a little traffic and no redeliveries.
 */
const MAX_RETRY_ACK_WAIT_MS = 5_000;
/** A copy due within this is held here until due, not nak'd for another round trip through the server. */
const DUE_SLACK_MS = 10;
/** The longest nak delay (core caps retry delays below it). */
const MAX_DELAY_MS = 2 ** 31 - 1;

/**
 * A group member: the group's durable pull consumer (explicit ack, `max_ack_pending` = prefetch) and its
 * retry consumer on the retry stream (its own ack window). A failed message is copied to the group's retry
 * subject and acked, so retries never hold the group's window; the retry consumer delays each copy with
 * `nak(until due)` and hands due ones to core, at most `prefetch` at a time. Every message busbar still
 * holds gets `working()` every third of the ack wait, so a slow handler keeps its message.
 */
export async function subscribeGroup(
  ctx: GroupContext,
  spec: SubscribeSpec,
  callbacks: SubscribeCallbacks,
): Promise<TransportSubscription> {
  const group = spec.group as string;
  const { topology } = ctx;
  const name = consumerName(spec.topic, group);
  const stream = await topology.ensureStream(spec.topic);
  const { filter, exact } = topology.filterFor(spec.topic, stream);
  const settings = { ackWaitMs: ctx.ackWaitMs, maxAckPending: spec.prefetch, update: true };

  // Writes this subscription will need must be accepted: found out now, not at the first failure.
  const dlq = spec.deadLetterTopic;
  if (dlq !== undefined && !isPattern(dlq) && group !== DEAD_LETTER_READER_GROUP) {
    await topology.assertCovered(toSubject(dlq), 'dead-letter', () => topology.ensureStream(dlq));
  }
  const subject = retrySubject(stream, name);
  await topology.assertCovered(subject, 'retry', () => topology.ensureRetryStream());
  const retryName = retryConsumerName(stream, name);
  const retrySettings = {
    ackWaitMs: Math.min(ctx.ackWaitMs, MAX_RETRY_ACK_WAIT_MS),
    maxAckPending: Math.max(MIN_RETRY_WINDOW, spec.prefetch),
    update: true,
    deliverAll: true,
  };

  const held = new Set<NatsDelivery>();
  const heldCopies = new Set<NatsDelivery>();
  /** Due retry copies waiting for room (at most `prefetch` copies are with core at once). */
  const parked: { m: JsMsg; facts: CopyFacts }[] = [];
  let copiesInCore = 0;
  let active = true;
  /**
   * Messages that arrived after stop() began. A nak now would hand each straight back to this member's pull
   * request, still open at the server until the loop is closed, and the last ones would go to its gone inbox
   * and return only after the ack wait: they are nak'd once the loops are closed.
   */
  const late: JsMsg[] = [];
  /** Copies due within DUE_SLACK_MS, each with the timer that hands it over when due. */
  const soon = new Map<JsMsg, ReturnType<typeof setTimeout>>();
  const releaseLate = (): void => {
    for (const m of late.splice(0)) quietly(() => m.nak());
  };

  const hand = (m: JsMsg, facts: CopyFacts): void => {
    copiesInCore++;
    const delivery = new NatsDelivery(m, facts, holder, true);
    heldCopies.add(delivery);
    callbacks.onDelivery(delivery);
  };

  const holder: Holder = {
    retry: async (d, request: RetryRequest) => {
      await topology.ensureRetryStream();
      await ctx.publishCopy(retryCopy(subject, d.source, request, Date.now()));
    },
    settled: (d) => {
      held.delete(d);
      if (d.copy && heldCopies.delete(d)) {
        copiesInCore--;
        const next = active ? parked.shift() : undefined;
        if (next) hand(next.m, next.facts);
      }
    },
  };

  const onMessage = (m: JsMsg): void => {
    if (!active) {
      late.push(m);
      return;
    }
    if (!exact && !topicMatches(spec.topic, m.subject)) {
      quietly(() => m.ack());
      return;
    }
    const delivery = new NatsDelivery(m, decode(m, topology.epoch(stream)), holder, false);
    held.add(delivery);
    callbacks.onDelivery(delivery);
  };

  const onRetry = (m: JsMsg): void => {
    const facts = fromRetryCopy(decode(m), m.subject);
    const wait = facts.due - Date.now();
    if (wait > DUE_SLACK_MS) {
      quietly(() => m.nak(Math.min(wait, MAX_DELAY_MS)));
      return;
    }
    if (wait > 0) {
      // Not handed early: "no earlier than the delay". One ms more: a timer may fire 1 ms early by Date.now().
      soon.set(
        m,
        setTimeout(() => {
          soon.delete(m);
          onRetry(m);
        }, wait + 1),
      );
      return;
    }
    if (!active) late.push(m);
    else if (copiesInCore >= spec.prefetch) parked.push({ m, facts });
    else hand(m, facts);
  };

  const main = new PullLoop(ctx, {
    name,
    batch: spec.prefetch,
    ensure: async (again) => {
      if (again) topology.forget(spec.topic);
      const s = await topology.ensureStream(spec.topic);
      await topology.ensureConsumer(s, name, filter, settings);
      return s;
    },
    onMessage,
    onError: callbacks.onError,
  });
  const retries = new PullLoop(ctx, {
    name: retryName,
    batch: spec.prefetch,
    ensure: async (again) => {
      if (again) topology.forget(RETRY_STREAM_KEY);
      const s = await topology.ensureRetryStream();
      await topology.ensureConsumer(s, retryName, subject, retrySettings);
      return s;
    },
    onMessage: onRetry,
    onError: callbacks.onError,
  });
  await retries.start();
  try {
    await main.start();
  } catch (error) {
    await retries.close();
    throw error;
  }

  // One timer per consumer: keeps every held message's ack deadline ahead of its handler.
  const keepAlive = every(ctx.ackWaitMs, () => {
    for (const d of held) quietly(() => d.raw.working());
  });
  const keepCopies = every(retrySettings.ackWaitMs, () => {
    for (const d of heldCopies) quietly(() => d.raw.working());
    for (const p of parked) quietly(() => p.m.working());
  });

  const releaseParked = (): void => {
    // With the connection gone, a copy returns after its ack wait.
    for (const p of parked.splice(0)) quietly(() => p.m.nak());
    for (const [m, timer] of soon) {
      clearTimeout(timer);
      quietly(() => m.nak());
    }
    soon.clear();
  };

  return {
    stop: async () => {
      active = false;
      releaseParked();
      await Promise.all([main.stop(), retries.stop()]);
      releaseLate();
    },
    close: async () => {
      active = false;
      clearInterval(keepAlive);
      clearInterval(keepCopies);
      releaseParked();
      await Promise.all([main.close(), retries.close()]);
      releaseLate();
      held.clear();
      heldCopies.clear();
    },
  };
}

/** A timer that runs `tick` every third of `ackWaitMs`. */
function every(ackWaitMs: number, tick: () => void): NodeJS.Timeout {
  const timer = setInterval(tick, Math.max(250, Math.floor(ackWaitMs / 3)));
  timer.unref();
  return timer;
}

/** A broadcast subscription: an ordered (ephemeral, unacked) consumer from the next message on. */
export async function subscribeBroadcast(
  ctx: ConsumerContext,
  spec: SubscribeSpec,
  callbacks: SubscribeCallbacks,
): Promise<TransportSubscription> {
  const stream = await ctx.topology.ensureStream(spec.topic);
  const { filter, exact } = ctx.topology.filterFor(spec.topic, stream);
  const consumer = await ctx.topology.hedge(() =>
    ctx.js.consumers.get(stream, {
      ...(filter === undefined ? {} : { filterSubjects: filter }),
      deliver_policy: DeliverPolicy.New,
    }),
  );
  let active = true;
  const messages = await consumer.consume({
    max_messages: spec.prefetch,
    expires: ctx.pullExpiresMs,
    callback: (m) => {
      if (!active) return;
      if (!exact && !topicMatches(spec.topic, m.subject)) return;
      callbacks.onDelivery(new NatsDelivery(m, decode(m, ctx.topology.epoch(stream)), undefined, false));
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
