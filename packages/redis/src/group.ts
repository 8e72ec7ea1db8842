import { BusbarError } from '@busbar/core';
import { type RetryRequest, type TransportSubscription, withTimeout } from '@busbar/core/transport';
import { AckBatcher } from './acks.js';
import { claimIdle, refreshHeld } from './claim.js';
import { CLOSE_STEP_MS } from './closing.js';
import { retryPayload } from './codec.js';
import type { ConsumerInit } from './consumer.js';
import { type DeliveryOwner, decodeOrUndecodable, Held, RedisDelivery } from './delivery.js';
import { isReplyError, toBusbarError } from './errors.js';
import type { TopicKeys } from './keys.js';
import { BlockingReader, entriesOf, type ReadMode, type Row, type StreamReply, settlesWithin } from './reader.js';
import { RetryMover } from './retry.js';
import { scheduleRetry, setIdle } from './scripts.js';
import { deliveryCounts, ensureGroup, forgetConsumer } from './topology.js';

export interface GroupInit extends ConsumerInit {
  readonly keys: TopicKeys;
  readonly group: string;
  readonly consumer: string;
  readonly claimIdleMs: number;
  readonly claimIntervalMs: number;
  readonly retryPollMs: number;
}

/**
 * A member of a consumer group: the blocking reader in XREADGROUP mode over the topic stream and the
 * group's retry stream, acks batched into one XACK per stream, a claim loop (XAUTOCLAIM) for entries of
 * dead or releasing members, and a mover that brings due retries back.
 */
export class GroupConsumer implements TransportSubscription, DeliveryOwner, ReadMode {
  readonly #i: GroupInit;
  readonly #held: Held;
  readonly #reader: BlockingReader;
  readonly #acks: AckBatcher;
  readonly #mover: RetryMover;
  #intakeClosed = false;
  #rereadPending = true;
  #claimTimer: NodeJS.Timeout | undefined;
  #claiming: Promise<void> = Promise.resolve();
  /**
   * The last claim pass ran out of room with claimable entries possibly left: claim again as soon as half the
   * room is free, not a claim interval later (a walk over a re-released backlog ended before it, missing them).
   */
  #claimBacklog = false;
  /**
   * One set per re-read on its way (own pending entries, a claim pass), of the entries acked or moved to the
   * retry stream since it was sent: Redis may have served it before that XACK, and its reply must not hand
   * them out again (a re-drive walk re-published such a dead letter twice).
   */
  readonly #rereads = new Set<Set<string>>();

  constructor(init: GroupInit) {
    this.#i = init;
    this.#held = new Held(init.keys.retryStream);
    this.#reader = new BlockingReader(init, this);
    this.#mover = new RetryMover(init);
    this.#acks = new AckBatcher(init);
  }

  async start(): Promise<void> {
    await this.#reader.start();
    this.#claimTimer = setInterval(() => {
      this.#claiming = this.#claiming.then(() => this.#claimTick());
    }, this.#i.claimIntervalMs);
    this.#claiming = this.#claimTick();
    this.#mover.schedule(0);
  }

  get held(): number {
    return this.#held.size;
  }

  /** XREADGROUP of new entries on the topic stream and the group's retry stream. */
  read(count: number, block: boolean): Promise<StreamReply> {
    const { reader, keys, group, consumer } = this.#i;
    const args: (string | number)[] = ['GROUP', group, consumer, 'COUNT', count];
    if (block) args.push('BLOCK', this.#i.blockMs);
    args.push('STREAMS', keys.stream, keys.retryStream, '>', '>');
    return reader.callBuffer('XREADGROUP', ...args) as Promise<StreamReply>;
  }

  deliver(rows: Row[]): void {
    for (const [stream, id, fields] of rows) this.#deliver(stream, id, fields, 1, true);
  }

  /** After a reconnect a read may have been served without its reply reaching us: read our own pending entries again. */
  reconnected(): void {
    this.#rereadPending = true;
  }

  async catchUp(room: number): Promise<boolean> {
    if (!this.#rereadPending) return false;
    this.#rereadPending = false;
    await this.#readOwnPending(this.#i.keys.stream, room);
    await this.#readOwnPending(this.#i.keys.retryStream, room);
    return true;
  }

  async recover(error: unknown): Promise<boolean> {
    this.#rereadPending = true;
    if (!isReplyError(error, 'NOGROUP')) return false;
    // The stream or group was deleted under us: recreate it (from now on) and go on.
    await ensureGroup(this.#i.client, this.#i.keys, this.#i.group).catch(() => undefined);
    return true;
  }

  /** Re-reads entries this consumer was given but never settled (a restart with the same name, a lost reply). */
  async #readOwnPending(stream: string, room: number): Promise<void> {
    const { reader, group, consumer } = this.#i;
    let from = '0';
    let left = room;
    await this.#watchingAcks(async (gone) => {
      while (left > 0 && !this.#reader.stopped) {
        const args = ['GROUP', group, consumer, 'COUNT', left, 'STREAMS', stream, from];
        const rows = entriesOf((await reader.callBuffer('XREADGROUP', ...args)) as StreamReply);
        if (rows.length === 0) return;
        from = (rows[rows.length - 1] as Row)[1];
        const fresh = rows.filter(([, id]) => !this.#held.has(stream, id));
        if (fresh.length === 0) continue;
        const counts = await this.#deliveryCounts(stream, (fresh[0] as Row)[1], from, rows.length);
        for (const [, id, fields] of fresh) {
          if (!gone.has(`${stream} ${id}`)) this.#deliver(stream, id, fields, counts.get(id) ?? 1);
        }
        left -= fresh.length;
      }
    });
  }

  /**
   * Runs a re-read with `gone`: the entries acked whose XACK is not confirmed when it starts, and every entry
   * acked (or moved to the retry stream) while it runs. An entry in it must not be handed out again.
   */
  async #watchingAcks(reread: (gone: ReadonlySet<string>) => Promise<void>): Promise<void> {
    const gone = new Set(this.#acks.unconfirmed());
    this.#rereads.add(gone);
    try {
      await reread(gone);
    } finally {
      this.#rereads.delete(gone);
    }
  }

  /** Acked or moved to the retry stream: no re-read on its way may hand it out again. */
  #gone(d: RedisDelivery): void {
    for (const gone of this.#rereads) gone.add(`${d.raw.stream} ${d.raw.entryId}`);
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
    if (fields === null) {
      // Trimmed or deleted while pending: nothing left to deliver; drop it from the pending list.
      void this.#i.client.call('XACK', stream, this.#i.group, entryId).catch(() => undefined);
      return;
    }
    const raw = { stream, entryId, deliveryCount };
    const fromRetry = stream === this.#i.keys.retryStream;
    const d = new RedisDelivery(this, this.#i.topic, raw, decodeOrUndecodable(entryId, fields), fromRetry, Date.now());
    this.#held.add(d);
    this.#i.callbacks.onDelivery(d);
  }

  /** Settled (ack or release begun, retry scheduled): no longer held, room for one more. */
  settled(d: RedisDelivery): void {
    this.#held.delete(d);
    this.#reader.wake();
    if (this.#claimBacklog && this.#held.size <= this.#i.prefetch / 2 && !this.#reader.stopped) {
      this.#claimBacklog = false;
      this.#claiming = this.#claiming.then(() => this.#claimTick());
    }
  }

  /** Queued for this turn's XACK; nothing to wait for (see AckBatcher), so core spends no promise on it. */
  ack(d: RedisDelivery): undefined {
    this.#acks.add(d.raw.entryId, d.fromRetry);
    if (this.#rereads.size > 0) this.#gone(d);
    return undefined;
  }

  /** Until this resolves the entry stays held (kept unclaimable): a failed retry leaves it for core to release. */
  async retry(d: RedisDelivery, request: RetryRequest): Promise<void> {
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
      throw toBusbarError(error, { what: 'Scheduling a retry', op: 'consume', secrets: this.#i.secrets });
    }
    this.#gone(d);
    this.#mover.schedule(request.delayMs);
  }

  async release(d: RedisDelivery): Promise<void> {
    const { client, group, consumer, claimIdleMs } = this.#i;
    // Still pending, but idle "long enough": the next claim pass of any member takes it.
    try {
      await withTimeout(
        setIdle.run(client, [d.raw.stream], [group, consumer, claimIdleMs + 1, d.raw.entryId]),
        this.#i.opTimeoutMs,
        'Release timed out',
      );
    } catch (error) {
      throw toBusbarError(error, { what: 'Releasing an entry', op: 'consume', secrets: this.#i.secrets });
    }
  }

  async #claimTick(): Promise<void> {
    if (this.#reader.stopped) return;
    const { keys } = this.#i;
    try {
      await refreshHeld(this.#i, this.#held.values());
      await this.#watchingAcks(async (gone) => {
        for (const stream of [keys.stream, keys.retryStream]) {
          const pass = await claimIdle(this.#i, stream, {
            room: () => (this.#reader.stopped ? 0 : this.#i.prefetch - this.#held.size),
            deliver: (id, fields, count) => {
              if (!gone.has(`${stream} ${id}`)) this.#deliver(stream, id, fields, count);
            },
          });
          if (pass === 'full') this.#claimBacklog = true;
        }
      });
    } catch (error) {
      if (!this.#reader.stopped)
        this.#i.logger.warn(`Claim pass on '${this.#i.topic}' failed`, {
          error: toBusbarError(error, { what: 'XAUTOCLAIM', op: 'consume', secrets: this.#i.secrets }),
        });
    }
  }

  async stop(): Promise<void> {
    if (this.#reader.stopped) return;
    clearInterval(this.#claimTimer);
    this.#mover.stop();
    await this.#reader.stop();
    await settlesWithin(this.#claiming, this.#i.closing.silent ? 0 : this.#i.blockMs + 1_000);
    this.#intakeClosed = true;
  }

  async close(): Promise<void> {
    await this.stop();
    const { client, keys, group, consumer, closing } = this.#i;
    await settlesWithin(this.#acks.flushed(), closing.silent ? 0 : this.#i.opTimeoutMs);
    try {
      // Best effort, and only worth a round trip while Redis answers.
      if (!closing.silent && client.status === 'ready') {
        const forgotten = withTimeout(forgetConsumer(client, keys, group, consumer), CLOSE_STEP_MS, 'XPENDING');
        await forgotten.catch((error: unknown) => {
          if (BusbarError.is(error, 'BUSBAR_TIMEOUT')) closing.silent = true;
        });
      }
    } catch {
      // A leftover consumer entry only shows in XINFO CONSUMERS.
    } finally {
      this.#reader.disconnect();
    }
  }
}
