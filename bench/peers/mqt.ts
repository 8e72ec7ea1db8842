import amqplib from 'amqplib';
import type { Running, Side, Target } from '../lib/types.js';
import { Countdown, pool, uniqueGroup, uniqueTopic, WINDOW } from '../lib/util.js';
import { importModule, requireModule } from './load.js';

/** The few @message-queue-toolkit calls the bench makes (see its README: publishers and consumers per queue). */
interface Service {
  init(): Promise<void>;
  close(): Promise<void>;
}
interface Publisher extends Service {
  publish(message: BenchMessage): void;
}
interface Consumer extends Service {
  start(): Promise<void>;
}
type Ctor<T> = new (dependencies: Record<string, unknown>, options: Record<string, unknown>) => T;
interface AmqpModule {
  AmqpConnectionManager: new (
    config: Record<string, unknown>,
    logger: unknown,
  ) => { init(): Promise<void>; close(): Promise<void> };
  AbstractAmqpQueuePublisher: Ctor<Publisher>;
  AbstractAmqpQueueConsumer: Ctor<Consumer>;
}
interface HandlerBuilder {
  addConfig(schema: unknown, handler: (message: BenchMessage) => Promise<{ result: 'success' }>): HandlerBuilder;
  build(): unknown[];
}
interface CoreModule {
  MessageHandlerConfigBuilder: new () => HandlerBuilder;
}
interface Zod {
  z: {
    object(shape: Record<string, unknown>): unknown;
    string(): unknown;
    literal(value: string): unknown;
  };
}
interface BenchMessage {
  readonly id: string;
  readonly type: 'bench';
  readonly timestamp: string;
  readonly body: string;
}

const quiet = () => undefined;
/** A silent CommonLogger (pino's shape), as busbar's side runs with silentLogger. */
const logger = {
  level: 'silent',
  fatal: quiet,
  error: quiet,
  warn: quiet,
  info: quiet,
  debug: quiet,
  trace: quiet,
  silent: quiet,
  isLevelEnabled: () => false,
  child: () => logger,
};

/**
 * @message-queue-toolkit/amqp as its README and tests use it: one AmqpConnectionManager, a queue publisher and a
 * queue consumer per queue (subclasses of its abstract classes), zod-validated messages with `id`, `type` and
 * `timestamp`, a handler returning `{ result: 'success' }` (acked then). It does other work than busbar: its
 * publish is synchronous fire-and-forget on a channel without confirms (nothing tells the caller the broker has
 * the message), its consumer sets no prefetch, retries by requeueing and has no dead-letter queue on AMQP.
 */
export async function mqtSide(url: string): Promise<Side> {
  const amqp = await importModule<AmqpModule>('@message-queue-toolkit/amqp');
  const core = await importModule<CoreModule>('@message-queue-toolkit/core');
  const { z } = requireModule<Zod>('zod');
  const schema = z.object({ id: z.string(), type: z.literal('bench'), timestamp: z.string(), body: z.string() });
  const parsed = new URL(url);
  const manager = new amqp.AmqpConnectionManager(
    {
      hostname: parsed.hostname,
      port: Number(parsed.port || 5672),
      username: decodeURIComponent(parsed.username),
      password: decodeURIComponent(parsed.password),
      vhost: '',
      useTls: false,
    },
    logger,
  );
  await manager.init();
  const admin = await amqplib.connect(url);
  const adminChannel = await admin.createChannel();
  const common = {
    messageTypeResolver: { messageTypePath: 'type' },
    messageSchemas: [schema],
  };
  const dependencies = {
    amqpConnectionManager: manager,
    logger,
    errorReporter: { report: quiet },
    consumerErrorResolver: { processError: (error: unknown) => error },
  };
  const queueOf = (target: Target) => `${target.topic}.${target.group}`;
  const creationConfig = (target: Target) => ({ queueName: queueOf(target), queueOptions: { durable: true } });
  const publishers = new Map<string, Publisher>();
  let seq = 0;
  const send = (target: Target, payload: Buffer) => {
    const publisher = publishers.get(target.topic);
    if (!publisher) throw new Error(`no publisher for ${target.topic}`);
    publisher.publish({
      id: (seq++).toString(36),
      type: 'bench',
      timestamp: new Date().toISOString(),
      body: payload.toString('latin1'),
    });
  };
  return {
    label: '@message-queue-toolkit/amqp',
    async fresh() {
      const target = { topic: uniqueTopic(), group: uniqueGroup() };
      // The publisher of a queue creates it (durable) at init, before anything is published.
      const publisher = new amqp.AbstractAmqpQueuePublisher(dependencies, {
        ...common,
        creationConfig: creationConfig(target),
        isLazyInitEnabled: false,
      });
      await publisher.init();
      publishers.set(target.topic, publisher);
      return target;
    },
    async drop(target) {
      await publishers.get(target.topic)?.close();
      publishers.delete(target.topic);
      await adminChannel.deleteQueue(queueOf(target));
    },
    // Synchronous publishes (no confirms): the block ends when the last one is written to the socket buffer.
    async publishBatch(target, count, payload) {
      await pool(count, WINDOW, async () => send(target, payload));
    },
    async publishConcurrent(target, count, payload) {
      await pool(count, WINDOW, async () => send(target, payload));
    },
    async publishOne(target, payload) {
      send(target, payload);
    },
    async consume(target, count, onBody): Promise<Running> {
      const handled = new Countdown(count);
      const empty = new Uint8Array(0);
      const handlers = new core.MessageHandlerConfigBuilder()
        .addConfig(schema, async () => {
          onBody(empty);
          handled.add();
          return { result: 'success' };
        })
        .build();
      const consumer = new amqp.AbstractAmqpQueueConsumer(dependencies, {
        ...common,
        handlers,
        creationConfig: creationConfig(target),
      });
      await consumer.start();
      return {
        done: handled.done,
        async close() {
          // Its ack follows the handler's promise by a few microtasks; closing first would make that ack throw.
          await new Promise<void>((resolve) => setImmediate(resolve));
          await consumer.close();
        },
      };
    },
    async close() {
      for (const publisher of publishers.values()) await publisher.close().catch(() => undefined);
      await manager.close();
      await admin.close();
    },
  };
}
