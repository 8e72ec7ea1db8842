import type {
  Logger,
  SubscribeCallbacks,
  SubscribeSpec,
  TransportContext,
  TransportSubscription,
} from '@busbar/core/transport';
import { type ClientConfig, connectClient, createClient, type RedisClient } from './client.js';
import type { CloseState } from './closing.js';
import { type DeliveryOwner, decodeOrUndecodable, Held, RedisDelivery } from './delivery.js';
import { toBusbarError } from './errors.js';
import { GroupConsumer } from './group.js';
import { streamKey, topicKeys } from './keys.js';
import type { RedisOptions } from './options.js';
import { BlockingReader, lastEntryId, type ReadMode, type Row, type StreamReply } from './reader.js';
import { ensureGroup } from './topology.js';

/** What both read modes get. */
export interface ConsumerInit {
  readonly client: RedisClient;
  /** This subscription's own connection, for the blocking read. */
  readonly reader: RedisClient;
  readonly topic: string;
  readonly prefetch: number;
  readonly blockMs: number;
  /** Bound on acks, retries, releases and close-time commands: ioredis queues commands while disconnected. */
  readonly opTimeoutMs: number;
  /** Whether Redis stopped answering close-time commands (shared with the transport and its other subscriptions). */
  readonly closing: CloseState;
  readonly secrets: readonly string[];
  readonly logger: Logger;
  readonly callbacks: SubscribeCallbacks;
}

/** What the transport shares with every subscription it opens. */
export interface ConsumerContext {
  readonly ctx: TransportContext<RedisOptions>;
  readonly config: ClientConfig;
  readonly client: RedisClient;
  readonly closing: CloseState;
  /** The bus's secrets and the TLS client key. */
  readonly secrets: readonly string[];
  /** A consumer name unique within the group (stable across restarts when `consumerName` is set). */
  nextConsumer(): string;
}

/**
 * `subscribe()`: a connection of its own for the blocking read, then a group member (XREADGROUP) or a
 * broadcast reader (XREAD). Resolves once entries published afterwards will be read.
 */
export async function openConsumer(
  at: ConsumerContext,
  spec: SubscribeSpec,
  callbacks: SubscribeCallbacks,
  claimIdleMs: number,
): Promise<TransportSubscription> {
  const { ctx, config } = at;
  const o = ctx.options;
  const reader = createClient({ ...config, connectionName: `${config.connectionName}-reader` }, true);
  reader.on('error', () => undefined); // reported through the read loop (sanitized); the event itself must not crash
  try {
    await connectClient(reader, config, at.secrets, true);
    const common: ConsumerInit = {
      client: at.client,
      reader,
      topic: spec.topic,
      prefetch: spec.prefetch,
      blockMs: o.blockMs,
      opTimeoutMs: ctx.bus.publishTimeoutMs,
      closing: at.closing,
      secrets: at.secrets,
      logger: ctx.logger,
      callbacks,
    };
    if (spec.group === undefined) {
      const sub = new BroadcastConsumer(common, streamKey(o.keyPrefix, spec.topic));
      await sub.start();
      return sub;
    }
    const keys = topicKeys(o.keyPrefix, spec.topic, spec.group);
    await ensureGroup(at.client, keys, spec.group);
    const sub = new GroupConsumer({
      ...common,
      keys,
      group: spec.group,
      consumer: at.nextConsumer(),
      claimIdleMs,
      claimIntervalMs: o.claimIntervalMs,
      retryPollMs: o.retryPollMs,
    });
    await sub.start();
    return sub;
  } catch (error) {
    reader.disconnect();
    throw toBusbarError(error, { what: `Subscribing to '${spec.topic}'`, op: 'consume', secrets: at.secrets });
  }
}

/**
 * A broadcast subscription: the blocking reader in XREAD mode, from the stream's last entry at subscribe
 * time. Nothing is recorded on the broker, so settling is local: core retries broadcast messages in
 * process and never asks the transport to (`retry` is a group's).
 */
class BroadcastConsumer implements TransportSubscription, DeliveryOwner, ReadMode {
  readonly #i: ConsumerInit;
  readonly #stream: string;
  readonly #held = new Held(undefined);
  readonly #reader: BlockingReader;
  #lastId = '0-0';

  constructor(init: ConsumerInit, stream: string) {
    this.#i = init;
    this.#stream = stream;
    this.#reader = new BlockingReader(init, this);
  }

  async start(): Promise<void> {
    // The last entry now, not `$` at the first XREAD: a publish that resolves after subscribe must be seen.
    const last = (await this.#i.client.call('XREVRANGE', this.#stream, '+', '-', 'COUNT', 1)) as [string, unknown][];
    this.#lastId = last[0]?.[0] ?? '0-0';
    await this.#reader.start();
  }

  get held(): number {
    return this.#held.size;
  }

  async read(count: number, block: boolean): Promise<StreamReply> {
    const args: (string | number)[] = ['COUNT', count];
    if (block) args.push('BLOCK', this.#i.blockMs);
    args.push('STREAMS', this.#stream, this.#lastId);
    const reply = (await this.#i.reader.callBuffer('XREAD', ...args)) as StreamReply;
    this.#lastId = lastEntryId(reply) ?? this.#lastId;
    return reply;
  }

  deliver(rows: Row[]): void {
    const now = Date.now();
    for (const [stream, entryId, fields] of rows) {
      // XREAD never returns a deleted entry; a null here would be nothing to deliver anyway.
      if (fields === null) continue;
      const raw = { stream, entryId, deliveryCount: 1 };
      const d = new RedisDelivery(this, this.#i.topic, raw, decodeOrUndecodable(entryId, fields), false, now);
      this.#held.add(d);
      this.#i.callbacks.onDelivery(d);
    }
  }

  catchUp(): Promise<boolean> {
    return Promise.resolve(false);
  }

  recover(): Promise<boolean> {
    return Promise.resolve(false);
  }

  reconnected(): void {}

  settled(d: RedisDelivery): void {
    this.#held.delete(d);
    this.#reader.wake();
  }

  /** XREAD keeps no pending list: nothing to tell Redis. */
  ack(): undefined {
    return undefined;
  }

  release(): undefined {
    return undefined;
  }

  async stop(): Promise<void> {
    await this.#reader.stop();
  }

  async close(): Promise<void> {
    await this.#reader.stop();
    this.#reader.disconnect();
  }
}
