import type { Running, Side, Target } from '../lib/types.js';
import { Countdown, PREFETCH, pool, uniqueGroup, uniqueTopic, WINDOW } from '../lib/util.js';
import { requireModule } from './load.js';

/** The part of moleculer's ServiceBroker the bench uses. */
interface ServiceBroker {
  start(): Promise<void>;
  stop(): Promise<void>;
  createService(schema: Record<string, unknown>): unknown;
  sendToChannel(name: string, payload: unknown): Promise<void>;
}
type BrokerClass = new (options: Record<string, unknown>) => ServiceBroker;

/** One @moleculer/channels adapter and what the bench must do around it on that broker. */
export interface ChannelsAdapter {
  /** The adapter option of the Channels middleware. */
  readonly adapter: Record<string, unknown>;
  /** Per-channel options (e.g. Kafka: read a new group's topic from its start). */
  readonly channel?: Record<string, unknown>;
  /** Broker objects that must exist before the group subscribes (Kafka: the topic, with busbar's partitions). */
  prepare?(topic: string): Promise<void>;
  /** Deletes what a block left (streams, queues, exchanges, topics). */
  drop(target: Target): Promise<void>;
  close?(): Promise<void>;
}

const EMPTY = new Uint8Array(0);
let brokers = 0;

/**
 * @moleculer/channels as its README uses it: a ServiceBroker with the Channels middleware, `sendToChannel` to
 * publish (awaited: resolves when the adapter's publish resolved), a service whose `channels` entry names the
 * topic and group with `maxInFlight` = busbar's prefetch; a handler that resolves acks the message (JSON
 * serializer, the adapter's default retries, no dead-lettering unless configured: its default). A consumer is
 * a broker of its own started with the service, because `broker.start()` is the one call that resolves once
 * the channels are subscribed; the payload is a string of the payload's size (the serializer is JSON).
 */
export async function moleculerSide(label: string, spec: ChannelsAdapter): Promise<Side> {
  const { ServiceBroker } = requireModule<{ ServiceBroker: BrokerClass }>('moleculer');
  const { Middleware } = requireModule<{ Middleware: (options: Record<string, unknown>) => unknown }>(
    '@moleculer/channels',
  );
  const newBroker = () =>
    new ServiceBroker({
      nodeID: `busbar-bench-${process.pid}-${++brokers}`,
      logger: false,
      middlewares: [Middleware({ adapter: spec.adapter })],
    });
  const publisher = newBroker();
  await publisher.start();
  // A consumer broker with one service: start() resolves once its channel is subscribed.
  const member = async (target: Target, handler: (payload: unknown) => void): Promise<ServiceBroker> => {
    const broker = newBroker();
    broker.createService({
      name: `bench${uniqueGroup()}`,
      channels: {
        [target.topic]: { group: target.group, maxInFlight: PREFETCH, ...spec.channel, handler },
      },
    });
    await broker.start();
    return broker;
  };
  const send = (target: Target, payload: Buffer) => publisher.sendToChannel(target.topic, payload.toString('latin1'));
  return {
    label,
    async fresh() {
      const target = { topic: uniqueTopic(), group: uniqueGroup() };
      await spec.prepare?.(target.topic);
      // The group exists once a member subscribed; it keeps what is published from now on.
      await (await member(target, () => undefined)).stop();
      return target;
    },
    drop: (target) => spec.drop(target),
    // No batch publish in moleculer: a batch is BATCH sends awaited together, as the MQTT raw side.
    async publishBatch(target, count, payload) {
      await pool(count, WINDOW, () => send(target, payload));
    },
    async publishConcurrent(target, count, payload) {
      await pool(count, WINDOW, () => send(target, payload));
    },
    async publishOne(target, payload) {
      await send(target, payload);
    },
    async consume(target, count, onBody): Promise<Running> {
      const handled = new Countdown(count);
      const broker = await member(target, () => {
        onBody(EMPTY);
        handled.add();
      });
      return { done: handled.done, close: () => broker.stop() };
    },
    async close() {
      await publisher.stop();
      await spec.close?.();
    },
  };
}
