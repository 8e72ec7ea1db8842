import {
  ConfigError,
  type ConnectionEvent,
  channels,
  type Health,
  type Outcome,
  type ProcessContext,
  type PublishContext,
  type SettledEvent,
} from '@busbar/core';
import { Counter, Gauge, Histogram, type Registry, register } from 'prom-client';
import { ConnectionStates } from './connections.js';
import type { HealthSource } from './health.js';
import { busLagSource, type LagReading, type LagSource, readLag } from './lag.js';

export interface BusbarMetricsOptions {
  /** Where the metrics are registered. Default: prom-client's global `register`. */
  registry?: Registry;
  /** Metric name prefix. Default `busbar_`. */
  prefix?: string;
  /** Histogram buckets of `process_duration_seconds`, in seconds. */
  processBuckets?: number[];
  /** Histogram buckets of `publish_duration_seconds`, in seconds. */
  publishBuckets?: number[];
  /** Buses whose subscriptions (queued messages) and lag are read at each scrape. More with `watch()`. */
  buses?: readonly HealthSource[];
  /** Extra consumer-lag sources read at each scrape. More with `addLagSource()`. */
  lagSources?: readonly LagSource[];
  /** Longest a lag source may take per scrape. Default 2 000 ms. */
  lagTimeoutMs?: number;
  /**
   * Most distinct `topic` label values the message metrics take; messages on
   * further topics are counted under `topic="(other)"`. Default 1 000.
   */
  maxTopics?: number;
}

export interface BusbarMetrics {
  readonly registry: Registry;
  /** Reads this bus's subscriptions (and its lag, when it can tell) at each scrape. Returns an unwatch function. */
  watch(bus: HealthSource): () => void;
  /** Adds a consumer-lag source. Returns a function that removes it. */
  addLagSource(source: LagSource): () => void;
  /** Stops counting and removes every busbar metric from the registry. */
  unregister(): void;
}

const MAX_TIMER_MS = 2 ** 31 - 1;

/** The `topic` label of messages on topics past `maxTopics`: not a valid topic name, so never a real one. */
export const OTHER_TOPIC = '(other)';

/**
 * Topic label values, at most `max` of them, first come first kept. prom-client
 * keeps every label set it ever saw, so a wildcard subscription receiving a
 * topic per device, or a topic per run, would otherwise grow the process's
 * memory and the Prometheus series count without end. The set only grows, so
 * a topic maps to the same value for the life of the registration (the in-flight
 * gauge's inc and dec meet).
 */
function topicLimiter(max: number): (topic: string) => string {
  const kept = new Set<string>();
  return (topic) => {
    if (kept.has(topic)) return topic;
    if (kept.size >= max) return OTHER_TOPIC;
    kept.add(topic);
    return topic;
  };
}

const DEFAULT_BUCKETS = [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30];

/** Prometheus label values of a delivery outcome. */
const STATUS: Record<Outcome, string> = {
  acked: 'success',
  retried: 'retry',
  'dead-lettered': 'dead_letter',
  'dead-letter-failed': 'dead_letter_failed',
  duplicate: 'duplicate',
  dropped: 'dropped',
  released: 'released',
};

type Traced<T> = T & { error?: unknown };

/**
 * Registers busbar's Prometheus metrics and feeds them from core's
 * diagnostics channels, for every bus in the process:
 *
 * - `busbar_messages_published_total{topic,status}` and `busbar_publish_duration_seconds{topic,status}`
 * - `busbar_messages_processed_total{topic,group,status}` (success, retry, dead_letter, dead_letter_failed, duplicate, dropped, released)
 * - `busbar_process_duration_seconds{topic,group,status}` (handler time)
 * - `busbar_in_flight{topic,group}` handlers running now
 * - `busbar_dead_letters_total{topic,group,dead_letter_topic}`
 * - `busbar_reconnects_total{transport,connection}`, `busbar_connection_up{transport,connection}`
 * - `busbar_subscription_queued{topic,group}` (watched buses) and `busbar_consumer_lag`,
 *   `busbar_consumer_pending{topic,group}`, `busbar_topic_backlog{topic}` where a lag source can tell.
 */
export function registerBusbarMetrics(options: BusbarMetricsOptions = {}): BusbarMetrics {
  const registry = options.registry ?? register;
  const p = options.prefix ?? 'busbar_';
  const registers = [registry];
  const buses = new Set<HealthSource>();
  const lagSources = new Set<LagSource>(options.lagSources ?? []);
  const busLag = new Map<HealthSource, LagSource>();
  const lagTimeoutMs = options.lagTimeoutMs ?? 2_000;
  // Node runs a timer of NaN, Infinity or over 2^31-1 ms after 1 ms: every lag source would silently read as empty.
  if (typeof lagTimeoutMs !== 'number' || !(lagTimeoutMs >= 0 && lagTimeoutMs <= MAX_TIMER_MS)) {
    throw new ConfigError(`lagTimeoutMs must be a number of milliseconds from 0 to ${MAX_TIMER_MS}`);
  }
  const maxTopics = options.maxTopics ?? 1_000;
  if (typeof maxTopics !== 'number' || !Number.isInteger(maxTopics) || maxTopics < 1) {
    throw new ConfigError('maxTopics must be a whole number >= 1');
  }
  const topicOf = topicLimiter(maxTopics);

  const published = new Counter({
    name: `${p}messages_published_total`,
    help: 'Messages published, by outcome of the publish (success: the broker confirmed it).',
    labelNames: ['topic', 'status'] as const,
    registers,
  });
  const publishDuration = new Histogram({
    name: `${p}publish_duration_seconds`,
    help: 'Time from publish call to broker confirmation, per publish or publishBatch call.',
    labelNames: ['topic', 'status'] as const,
    buckets: options.publishBuckets ?? DEFAULT_BUCKETS,
    registers,
  });
  const processed = new Counter({
    name: `${p}messages_processed_total`,
    help: 'Deliveries settled, by status: success, retry, dead_letter, duplicate, dropped, released.',
    labelNames: ['topic', 'group', 'status'] as const,
    registers,
  });
  const processDuration = new Histogram({
    name: `${p}process_duration_seconds`,
    help: 'Handler run time, by the status the delivery settled with.',
    labelNames: ['topic', 'group', 'status'] as const,
    buckets: options.processBuckets ?? DEFAULT_BUCKETS,
    registers,
  });
  const inFlight = new Gauge({
    name: `${p}in_flight`,
    help: 'Handlers running now.',
    labelNames: ['topic', 'group'] as const,
    registers,
  });
  const deadLetters = new Counter({
    name: `${p}dead_letters_total`,
    help: 'Messages moved to a dead-letter topic after their last failed attempt.',
    labelNames: ['topic', 'group', 'dead_letter_topic'] as const,
    registers,
  });
  const reconnects = new Counter({
    name: `${p}reconnects_total`,
    help: 'Times a broker connection was lost and began reconnecting.',
    labelNames: ['transport', 'connection'] as const,
    registers,
  });
  const connectionUp = new Gauge({
    name: `${p}connection_up`,
    help: '1 while a broker connection is up, else 0.',
    labelNames: ['transport', 'connection'] as const,
    registers,
  });
  new Gauge({
    name: `${p}subscription_queued`,
    help: 'Messages received by a subscription of a watched bus and waiting for a handler slot.',
    labelNames: ['topic', 'group'] as const,
    registers,
    collect() {
      this.reset();
      for (const bus of buses) {
        // A source whose health() throws loses its own gauge for this scrape, not the whole scrape.
        let subscriptions: Health['subscriptions'];
        try {
          subscriptions = bus.health().subscriptions;
        } catch {
          continue;
        }
        for (const s of subscriptions) this.inc({ topic: s.topic, group: s.group ?? '' }, s.queued);
      }
    },
  });
  // The three lag gauges share one read of every source per scrape (prom-client collects them concurrently).
  let reading: Promise<LagReading[]> | undefined;
  const readOnce = (): Promise<LagReading[]> => {
    if (!reading) {
      const current = readLag([...lagSources, ...busLag.values()], lagTimeoutMs);
      reading = current;
      void current.then(() =>
        setImmediate(() => {
          if (reading === current) reading = undefined;
        }),
      );
    }
    return reading;
  };
  new Gauge({
    name: `${p}consumer_lag`,
    help: 'Messages stored for a consumer group that it has not received yet, where the transport can tell.',
    labelNames: ['topic', 'group'] as const,
    registers,
    async collect() {
      const readings = await readOnce();
      this.reset();
      for (const r of readings) if (r.lag !== undefined) this.set({ topic: r.topic, group: r.group ?? '' }, r.lag);
    },
  });
  new Gauge({
    name: `${p}consumer_pending`,
    help: 'Messages delivered to a consumer group and not settled yet, where the transport can tell.',
    labelNames: ['topic', 'group'] as const,
    registers,
    async collect() {
      const readings = await readOnce();
      this.reset();
      for (const r of readings)
        if (r.pending !== undefined) this.set({ topic: r.topic, group: r.group ?? '' }, r.pending);
    },
  });
  new Gauge({
    name: `${p}topic_backlog`,
    help: 'Messages the broker holds for a topic, where the transport can tell.',
    labelNames: ['topic'] as const,
    registers,
    async collect() {
      const readings = await readOnce();
      this.reset();
      for (const r of readings) if (r.backlog !== undefined) this.set({ topic: r.topic }, r.backlog);
    },
  });
  const names = [
    'messages_published_total',
    'publish_duration_seconds',
    'messages_processed_total',
    'process_duration_seconds',
    'in_flight',
    'dead_letters_total',
    'reconnects_total',
    'connection_up',
    'subscription_queued',
    'consumer_lag',
    'consumer_pending',
    'topic_backlog',
  ].map((name) => `${p}${name}`);

  const publishStarts = new WeakMap<object, number>();
  const publishHandlers = {
    start: (ctx: PublishContext) => void publishStarts.set(ctx, performance.now()),
    end: (ctx: Traced<PublishContext>) => {
      if (ctx.error !== undefined) publishDone(ctx);
    },
    asyncStart: () => undefined,
    asyncEnd: (ctx: Traced<PublishContext>) => publishDone(ctx),
    error: () => undefined,
  };
  const publishDone = (ctx: Traced<PublishContext>) => {
    const start = publishStarts.get(ctx);
    if (start === undefined) return;
    publishStarts.delete(ctx);
    const labels = { topic: topicOf(ctx.topic), status: ctx.error === undefined ? 'success' : 'error' };
    published.inc(labels, ctx.messages.length);
    publishDuration.observe(labels, (performance.now() - start) / 1000);
  };

  const running = new WeakSet<object>();
  const processHandlers = {
    start: (ctx: ProcessContext) => {
      running.add(ctx);
      inFlight.inc({ topic: topicOf(ctx.topic), group: ctx.group ?? '' });
    },
    end: (ctx: Traced<ProcessContext>) => {
      if (ctx.error !== undefined) processDone(ctx);
    },
    asyncStart: () => undefined,
    asyncEnd: (ctx: ProcessContext) => processDone(ctx),
    error: () => undefined,
  };
  const processDone = (ctx: ProcessContext) => {
    if (!running.delete(ctx)) return;
    inFlight.dec({ topic: topicOf(ctx.topic), group: ctx.group ?? '' });
  };

  const onSettled = (message: unknown) => {
    const event = message as SettledEvent;
    const status = STATUS[event.outcome];
    const group = event.group ?? '';
    const topic = topicOf(event.topic);
    processed.inc({ topic, group, status });
    if (event.outcome !== 'duplicate' && event.outcome !== 'released') {
      processDuration.observe({ topic, group, status }, event.durationMs / 1000);
    }
    if (event.outcome === 'dead-lettered') {
      // Named after the topic and group: bounded along with the topic, without taking a topic slot of its own.
      const deadLetterTopic = topic === OTHER_TOPIC ? OTHER_TOPIC : (event.deadLetterTopic ?? '');
      deadLetters.inc({ topic, group, dead_letter_topic: deadLetterTopic });
    }
  };
  const connectionStates = new ConnectionStates();
  const onConnection = (message: unknown) => {
    const event = message as ConnectionEvent;
    const labels = { transport: event.system, connection: event.connection };
    // Closed on purpose: not down, gone (a series left at 0 would fire the README's `busbar_connection_up == 0`).
    const up = connectionStates.update(event);
    if (up === undefined) connectionUp.remove(labels);
    else connectionUp.set(labels, up);
    if (event.state === 'reconnecting') reconnects.inc(labels);
  };

  channels.publish.subscribe(publishHandlers);
  channels.process.subscribe(processHandlers);
  channels.settled.subscribe(onSettled);
  channels.connection.subscribe(onConnection);

  const watch = (bus: HealthSource) => {
    buses.add(bus);
    const source = busLagSource(bus);
    if (source) busLag.set(bus, source);
    return () => {
      buses.delete(bus);
      busLag.delete(bus);
    };
  };
  for (const bus of options.buses ?? []) watch(bus);

  let registered = true;
  return {
    registry,
    watch,
    addLagSource(source) {
      lagSources.add(source);
      return () => void lagSources.delete(source);
    },
    unregister() {
      if (!registered) return;
      registered = false;
      channels.publish.unsubscribe(publishHandlers);
      channels.process.unsubscribe(processHandlers);
      channels.settled.unsubscribe(onSettled);
      channels.connection.unsubscribe(onConnection);
      for (const name of names) registry.removeSingleMetric(name);
    },
  };
}
