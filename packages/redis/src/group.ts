import { BusbarError } from '@busbar/core';
import {
  type Logger,
  type RetryRequest,
  type SubscribeCallbacks,
  type TransportSubscription,
  withTimeout,
} from '@busbar/core/transport';
import { Redis } from 'ioredis';
import { AckBatcher } from './acks.js';
import { claimIdle, refreshHeld } from './claim.js';
import type { RedisClient } from './client.js';
import { CLOSE_STEP_MS, type CloseState } from './closing.js';
import { decodeEntry, retryPayload } from './codec.js';
import { isReplyError, toBusbarError } from './errors.js';
import type { TopicKeys } from './keys.js';
import {
  type DeliveryOwner,
  entriesOf,
  Gate,
  Held,
  RedisDelivery,
  type StreamReply,
  settlesWithin,
  sleep,
} from './reader.js';
import { RetryMover } from './retry.js';
import { scheduleRetry, setIdle } from './scripts.js';
import { deliveryCounts, ensureGroup, forgetConsumer } from './topology.js';

export interface GroupInit {
  readonly client: RedisClient;
  /** This subscription's own connection, for the blocking XREADGROUP. */
  readonly reader: RedisClient;
  readonly keys: TopicKeys;
  readonly topic: string;
  readonly group: string;
  readonly consumer: string;
  readonly prefetch: number;
  readonly claimIdleMs: number;
  readonly claimIntervalMs: number;
  readonly retryPollMs: number;
  readonly blockMs: number;
  /** Bound on acks, retries, releases and close-time commands: ioredis queues commands while disconnected. */
  readonly opTimeoutMs: number;
  /** Whether Redis stopped answering close-time commands (shared with the transport and its other subscriptions). */
  readonly closing: CloseState;
  readonly secrets: readonly string[];
  readonly logger: Logger;
  readonly callbacks: SubscribeCallbacks;
}

/**
 * A member of a consumer group: one blocking XREADGROUP over the topic stream
 * and the group's retry stream on its own connection, acks batched into one
 * XACK per stream, a claim loop (XAUTOCLAIM) for entries of dead or releasing
 * members, and a mover that brings due retries back.
 */
export class GroupSubscription implements TransportSubscription, DeliveryOwner {
  readonly #i: GroupInit;
  readonly #held: Held;
  readonly #gate = new Gate();
  readonly #acks: AckBatcher;
  #stopped = false;
  #intakeClosed = false;
  #rereadPending = true;
  #loop: Promise<void> | undefined;
  #claimTimer: NodeJS.Timeout | undefined;
  #claiming: Promise<void> = Promise.resolve();
  readonly #mover: RetryMover;
  #readerId: number | undefined;

  constructor(init: GroupInit) {
    this.#i = init;
    this.#held = new Held(init.keys.retryStream);
    this.#mover = new RetryMover(init);
    this.#acks = new AckBatcher(init.client, init.keys, init.group, init.opTimeoutMs, init.secrets);
  }

  async start(): Promise<void> {
    const { reader } = this.#i;
    await this.#learnReaderId();
    // After a reconnect a read may have been served without its reply reaching us: look at our own pending entries again.
    reader.on('ready', () => {
      this.#rereadPending = true;
      void this.#learnReaderId();
    });
    this.#loop = this.#run();
    this.#claimTimer = setInterval(() => {
      this.#claiming = this.#claiming.then(() => this.#claimTick());
    }, this.#i.claimIntervalMs);
    this.#claiming = this.#claimTick();
    this.#mover.schedule(0);
  }

  async #learnReaderId(): Promise<void> {
    if (!(this.#i.reader instanceof Redis)) return; // a cluster reader: no CLIENT UNBLOCK, stop waits up to blockMs
    try {
      this.#readerId = Number(await this.#i.reader.call('CLIENT', 'ID'));
    } catch {
      this.#readerId = undefined;
    }
  }

  async #run(): Promise<void> {
    const { keys, group } = this.#i;
    const chunk = Math.max(1, Math.ceil(this.#i.prefetch / 2));
    let backoff = 0;
    // The next read, sent before the current reply is delivered: Redis serves it while this process
    // runs handlers (measured: without it the drain alternated between waiting and working).
    let ahead: Promise<StreamReply> | undefined;
    let aheadCount = 0;
    while (!this.#stopped) {
      try {
        let reply: StreamReply;
        let asked: number;
        if (ahead) {
          reply = await ahead;
          asked = aheadCount;
          ahead = undefined;
        } else {
          const room = this.#i.prefetch - this.#held.size;
          // Read in chunks: wait until half the prefetch is free (or nothing is held), else every ack
          // would trigger its own XREADGROUP COUNT 1 round trip.
          if (room <= 0 || (this.#held.size > 0 && room < chunk)) {
            await this.#gate.wait();
            continue;
          }
          if (this.#rereadPending) {
            this.#rereadPending = false;
            await this.#readOwnPending(keys.stream, room);
            await this.#readOwnPending(keys.retryStream, room);
            continue;
          }
          asked = Math.min(room, chunk);
          reply = await this.#read(asked, true);
        }
        const rows = entriesOf(reply);
        // A full reply means more is waiting: ask for it now without blocking (a blocking read queued
        // behind this one would hold up stop()), if the entries in hand leave room for it.
        aheadCount = Math.min(chunk, this.#i.prefetch - this.#held.size - rows.length);
        if (rows.length >= asked && !this.#stopped && aheadCount > 0) {
          ahead = this.#read(aheadCount, false);
          ahead.catch(() => undefined); // awaited (and its error handled) on the next turn
        }
        for (const [stream, id, fields] of rows) this.#deliver(stream, id, fields, 1, true);
        backoff = 0;
      } catch (error) {
        ahead = undefined;
        if (this.#stopped) break;
        this.#rereadPending = true;
        if (isReplyError(error, 'NOGROUP')) {
          // The stream or group was deleted under us: recreate it (from now on) and go on.
          await ensureGroup(this.#i.client, keys, group).catch(() => undefined);
        } else {
          this.#i.logger.warn(`Reading '${this.#i.topic}' for group '${group}' failed; retrying`, {
            error: toBusbarError(error, this.#i.secrets, 'XREADGROUP failed'),
          });
        }
        backoff = Math.min(backoff * 2 || 50, 2_000);
        await sleep(backoff);
      }
    }
    // A read sent ahead and not delivered: its entries stay pending for this consumer (re-read or claimed later).
    await ahead?.catch(() => undefined);
  }

  /** XREADGROUP of new entries on the topic stream and the group's retry stream. */
  #read(count: number, block: boolean): Promise<StreamReply> {
    const { reader, keys, group, consumer } = this.#i;
    const args: (string | number)[] = ['GROUP', group, consumer, 'COUNT', count];
    if (block) args.push('BLOCK', this.#i.blockMs);
    args.push('STREAMS', keys.stream, keys.retryStream, '>', '>');
    return reader.callBuffer('XREADGROUP', ...args) as Promise<StreamReply>;
  }

  /** Re-reads entries this consumer was given but never settled (a restart with the same name, a lost reply). */
  async #readOwnPending(stream: string, room: number): Promise<void> {
    const { reader, group, consumer } = this.#i;
    let from = '0';
    let left = room;
    while (left > 0 && !this.#stopped) {
      const reply = (await reader.callBuffer(
        'XREADGROUP',
        'GROUP',
        group,
        consumer,
        'COUNT',
        left,
        'STREAMS',
        stream,
        from,
      )) as StreamReply;
      const rows = entriesOf(reply);
      if (rows.length === 0) return;
      from = (rows[rows.length - 1] as [string, string, unknown])[1];
      const fresh = rows.filter(([, id]) => !this.#held.has(stream, id));
      if (fresh.length === 0) continue;
      const counts = await this.#deliveryCounts(stream, (fresh[0] as [string, string, unknown])[1], from, rows.length);
      for (const [, id, fields] of fresh) this.#deliver(stream, id, fields, counts.get(id) ?? 1);
      left -= fresh.length;
    }
  }

  #deliveryCounts(stream: string, start: string, end: string, count: number): Promise<Map<string, number>> {
    const { client, group, consumer } = this.#i;
    return deliveryCounts(client, { stream, group, consumer }, start, end, count);
  }

  /** `fresh`: read with `>`, so never handed to anyone before (no need to look it up in what is held). */
  #deliver(stream: string, entryId: string, fields: Buffer[] | null, deliveryCount: number, fresh = false): void {
    if (!fresh && this.#held.has(stream, entryId)) return;
    // A reply that arrives after stop resolved: the entries stay pending here and go to the next claimer.
    if (this.#intakeClosed) return;
    const fromRetry = stream === this.#i.keys.retryStream;
    if (fields === null) {
      // Trimmed or deleted while pending: nothing left to deliver; drop it from the pending list.
      void this.#i.client.call('XACK', stream, this.#i.group, entryId).catch(() => undefined);
      return;
    }
    let decoded: ReturnType<typeof decodeEntry>;
    try {
      decoded = decodeEntry(entryId, fields);
    } catch {
      // A malformed entry still goes to core, whose codec fails on it and dead-letters it.
      decoded = {
        id: entryId,
        key: undefined,
        headers: {},
        body: new Uint8Array(0),
        timestamp: Date.now(),
        baseAttempt: 1,
        contentType: undefined,
      };
    }
    const d = new RedisDelivery(
      this,
      this.#i.topic,
      { stream, entryId, deliveryCount },
      decoded,
      fromRetry,
      Date.now(),
    );
    this.#held.add(d);
    this.#i.callbacks.onDelivery(d);
  }

  #settle(d: RedisDelivery): boolean {
    if (d.settled) return false;
    d.settled = true;
    this.#held.delete(d);
    this.#gate.open();
    return true;
  }

  ack(d: RedisDelivery): Promise<void> {
    if (!this.#settle(d)) return Promise.resolve();
    return this.#acks.add(d.raw.entryId, d.fromRetry);
  }

  async retry(d: RedisDelivery, request: RetryRequest): Promise<void> {
    if (!this.#settle(d)) return;
    const { client, keys, group } = this.#i;
    const payload = retryPayload(d, d.raw.entryId, request.attempt, request.headers);
    try {
      const args = [group, d.raw.entryId, Math.max(0, Math.round(request.delayMs)), payload, d.fromRetry ? '1' : '0'];
      await withTimeout(
        scheduleRetry.run(client, [keys.retrySet, d.raw.stream], args),
        this.#i.opTimeoutMs,
        'Scheduling a retry timed out',
      );
    } catch (error) {
      // Not scheduled, not acked: core releases it next; it must stay claimable.
      d.settled = false;
      this.#held.add(d);
      throw toBusbarError(error, this.#i.secrets, 'Scheduling a retry failed');
    }
    this.#mover.schedule(request.delayMs);
  }

  async release(d: RedisDelivery): Promise<void> {
    if (!this.#settle(d)) return;
    const { client, group, consumer, claimIdleMs } = this.#i;
    // Still pending, but idle "long enough": the next claim pass of any member takes it.
    try {
      await withTimeout(
        setIdle.run(client, [d.raw.stream], [group, consumer, claimIdleMs + 1, d.raw.entryId]),
        this.#i.opTimeoutMs,
        'Release timed out',
      );
    } catch (error) {
      throw toBusbarError(error, this.#i.secrets, 'Releasing an entry failed');
    }
  }

  async #claimTick(): Promise<void> {
    if (this.#stopped) return;
    const { keys } = this.#i;
    try {
      await refreshHeld(this.#i, this.#held.values());
      for (const stream of [keys.stream, keys.retryStream]) {
        await claimIdle(this.#i, stream, {
          room: () => (this.#stopped ? 0 : this.#i.prefetch - this.#held.size),
          deliver: (id, fields, count) => this.#deliver(stream, id, fields, count),
        });
      }
    } catch (error) {
      if (!this.#stopped)
        this.#i.logger.warn(`Claim pass on '${this.#i.topic}' failed`, {
          error: toBusbarError(error, this.#i.secrets, 'XAUTOCLAIM failed'),
        });
    }
  }

  async stop(): Promise<void> {
    if (this.#stopped) return;
    this.#stopped = true;
    clearInterval(this.#claimTimer);
    this.#mover.stop();
    this.#gate.open();
    const { client, reader, closing } = this.#i;
    // Unreachable: the pending read can never return, and CLIENT UNBLOCK could never be sent.
    if (reader.status !== 'ready' || client.status !== 'ready') closing.silent = true;
    else if (this.#readerId !== undefined && !closing.silent) {
      // Ends the blocking read at once instead of after blockMs. A healthy Redis answers at once: no answer
      // within a step means it went silent, and nothing else will be answered either.
      const unblock = withTimeout(client.call('CLIENT', 'UNBLOCK', this.#readerId), CLOSE_STEP_MS, 'unblock');
      await unblock.catch(() => {
        closing.silent = true;
      });
    }
    // With Redis silent the read never returns (and ioredis does not reject commands queued while it
    // reconnects, even on disconnect): drop the connection and do not wait for it.
    if (closing.silent) reader.disconnect();
    else if (!(await settlesWithin(this.#loop, this.#i.blockMs + 1_000))) {
      closing.silent = true;
      reader.disconnect();
    }
    await settlesWithin(this.#claiming, closing.silent ? 0 : this.#i.blockMs + 1_000);
    this.#intakeClosed = true;
  }

  async close(): Promise<void> {
    await this.stop();
    await settlesWithin(this.#acks.flushed(), this.#i.closing.silent ? 0 : this.#i.opTimeoutMs);
    const { client, keys, group, consumer, reader } = this.#i;
    try {
      // Best effort, and only worth a round trip while Redis answers.
      if (!this.#i.closing.silent && client.status === 'ready') {
        const forgotten = withTimeout(forgetConsumer(client, keys, group, consumer), CLOSE_STEP_MS, 'XPENDING');
        await forgotten.catch((error: unknown) => {
          if (BusbarError.is(error, 'BUSBAR_TIMEOUT')) this.#i.closing.silent = true;
        });
      }
    } catch {
      // A leftover consumer entry only shows in XINFO CONSUMERS.
    } finally {
      reader.disconnect();
    }
  }
}
