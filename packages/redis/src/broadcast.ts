import {
  type Logger,
  type RetryRequest,
  type SubscribeCallbacks,
  type TransportSubscription,
  withTimeout,
} from '@busbar/core/transport';
import { Redis } from 'ioredis';
import type { RedisClient } from './client.js';
import { CLOSE_STEP_MS, type CloseState } from './closing.js';
import { decodeEntry } from './codec.js';
import { toBusbarError } from './errors.js';
import {
  type DeliveryOwner,
  entriesOf,
  Gate,
  RedisDelivery,
  type StreamReply,
  settlesWithin,
  sleep,
} from './reader.js';

export interface BroadcastInit {
  readonly client: RedisClient;
  readonly reader: RedisClient;
  readonly stream: string;
  readonly topic: string;
  readonly prefetch: number;
  readonly blockMs: number;
  readonly closing: CloseState;
  readonly secrets: readonly string[];
  readonly logger: Logger;
  readonly callbacks: SubscribeCallbacks;
}

/**
 * A broadcast subscription: XREAD from the stream's last entry at subscribe
 * time, on its own connection. Nothing is recorded on the broker, so
 * settling is local (core retries broadcast messages in process).
 */
export class BroadcastSubscription implements TransportSubscription, DeliveryOwner {
  readonly #i: BroadcastInit;
  readonly #gate = new Gate();
  #unsettled = 0;
  #lastId = '0-0';
  #stopped = false;
  #loop: Promise<void> | undefined;
  #readerId: number | undefined;

  constructor(init: BroadcastInit) {
    this.#i = init;
  }

  async start(): Promise<void> {
    // The last entry now, not `$` at the first XREAD: a publish that resolves after subscribe must be seen.
    const last = (await this.#i.client.call('XREVRANGE', this.#i.stream, '+', '-', 'COUNT', 1)) as [string, unknown][];
    this.#lastId = last[0]?.[0] ?? '0-0';
    if (this.#i.reader instanceof Redis) this.#readerId = Number(await this.#i.reader.call('CLIENT', 'ID'));
    this.#i.reader.on('ready', () => {
      if (this.#i.reader instanceof Redis) {
        this.#i.reader.call('CLIENT', 'ID').then(
          (id) => {
            this.#readerId = Number(id);
          },
          () => undefined,
        );
      }
    });
    this.#loop = this.#run();
  }

  async #run(): Promise<void> {
    let backoff = 0;
    while (!this.#stopped) {
      const room = this.#i.prefetch - this.#unsettled;
      if (room <= 0) {
        await this.#gate.wait();
        continue;
      }
      try {
        const reply = (await this.#i.reader.callBuffer(
          'XREAD',
          'COUNT',
          room,
          'BLOCK',
          this.#i.blockMs,
          'STREAMS',
          this.#i.stream,
          this.#lastId,
        )) as StreamReply;
        const now = Date.now();
        for (const [stream, entryId, fields] of entriesOf(reply)) {
          this.#lastId = entryId;
          if (fields === null) continue;
          let decoded: ReturnType<typeof decodeEntry>;
          try {
            decoded = decodeEntry(entryId, fields);
          } catch {
            continue;
          }
          this.#unsettled++;
          this.#i.callbacks.onDelivery(
            new RedisDelivery(this, this.#i.topic, { stream, entryId, deliveryCount: 1 }, decoded, false, now),
          );
        }
        backoff = 0;
      } catch (error) {
        if (this.#stopped) break;
        this.#i.logger.warn(`Reading '${this.#i.topic}' (broadcast) failed; retrying`, {
          error: toBusbarError(error, this.#i.secrets, 'XREAD failed'),
        });
        backoff = Math.min(backoff * 2 || 50, 2_000);
        await sleep(backoff);
      }
    }
  }

  #settle(d: RedisDelivery): Promise<void> {
    if (!d.settled) {
      d.settled = true;
      this.#unsettled--;
      this.#gate.open();
    }
    return Promise.resolve();
  }

  ack(d: RedisDelivery): Promise<void> {
    return this.#settle(d);
  }

  retry(d: RedisDelivery, _request: RetryRequest): Promise<void> {
    return this.#settle(d);
  }

  release(d: RedisDelivery): Promise<void> {
    return this.#settle(d);
  }

  async stop(): Promise<void> {
    if (this.#stopped) return;
    this.#stopped = true;
    this.#gate.open();
    const { client, reader, closing } = this.#i;
    // Unreachable: the pending read can never return, and CLIENT UNBLOCK could never be sent.
    if (reader.status !== 'ready' || client.status !== 'ready') closing.silent = true;
    else if (this.#readerId !== undefined && !closing.silent) {
      const unblock = withTimeout(client.call('CLIENT', 'UNBLOCK', this.#readerId), CLOSE_STEP_MS, 'unblock');
      await unblock.catch(() => {
        closing.silent = true;
      });
    }
    // With Redis silent the read never returns (and ioredis does not reject commands queued while it
    // reconnects, even on disconnect): drop the connection and do not wait for it.
    if (closing.silent || !(await settlesWithin(this.#loop, this.#i.blockMs + 1_000))) reader.disconnect();
  }

  async close(): Promise<void> {
    await this.stop();
    this.#i.reader.disconnect();
  }
}
