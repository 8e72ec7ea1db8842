import {
  type Logger,
  type RetryRequest,
  type SubscribeCallbacks,
  type TransportSubscription,
  withTimeout,
} from '@busbar/core/transport';
import { Redis } from 'ioredis';
import { callBuffer, type RedisClient } from './client.js';
import { decodeEntry, retryPayload } from './codec.js';
import { isReplyError, toBusbarError } from './errors.js';
import type { TopicKeys } from './keys.js';
import { type DeliveryOwner, entriesOf, Gate, RedisDelivery, type StreamReply } from './reader.js';
import { moveDue, scheduleRetry, setIdle } from './scripts.js';

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
  readonly secrets: readonly string[];
  readonly logger: Logger;
  readonly callbacks: SubscribeCallbacks;
}

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/** True if `promise` settles within `ms` (its outcome is ignored). */
export async function settlesWithin(promise: Promise<unknown> | undefined, ms: number): Promise<boolean> {
  if (!promise) return true;
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<boolean>((resolve) => {
    timer = setTimeout(() => resolve(false), ms);
  });
  const done = promise.then(
    () => true,
    () => true,
  );
  const result = await Promise.race([done, timeout]);
  clearTimeout(timer);
  return result;
}

/** Creates the group on the topic stream (from now on) and on its retry stream; an existing group is fine. */
export async function ensureGroup(client: RedisClient, keys: TopicKeys, group: string): Promise<void> {
  for (const [key, from] of [
    [keys.stream, '$'],
    [keys.retryStream, '0'],
  ] as const) {
    try {
      await client.call('XGROUP', 'CREATE', key, group, from, 'MKSTREAM');
    } catch (error) {
      if (!isReplyError(error, 'BUSYGROUP')) throw error;
    }
  }
}

/**
 * A member of a consumer group: one blocking XREADGROUP over the topic stream
 * and the group's retry stream on its own connection, acks batched into one
 * XACK per stream, a claim loop (XAUTOCLAIM) for entries of dead or releasing
 * members, and a mover that brings due retries back.
 */
export class GroupSubscription implements TransportSubscription, DeliveryOwner {
  readonly #i: GroupInit;
  readonly #held = new Map<string, RedisDelivery>();
  readonly #gate = new Gate();
  #acks: { main: string[]; retry: string[]; done: Promise<void> } | undefined;
  #stopped = false;
  #intakeClosed = false;
  #rereadPending = true;
  #loop: Promise<void> | undefined;
  #claimTimer: NodeJS.Timeout | undefined;
  #claiming: Promise<void> = Promise.resolve();
  #moveTimer: NodeJS.Timeout | undefined;
  #moveAt = Number.POSITIVE_INFINITY;
  #readerId: number | undefined;

  constructor(init: GroupInit) {
    this.#i = init;
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
    this.#scheduleMove(0);
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
    const { reader, keys, group, consumer } = this.#i;
    let backoff = 0;
    while (!this.#stopped) {
      const room = this.#i.prefetch - this.#held.size;
      if (room <= 0) {
        await this.#gate.wait();
        continue;
      }
      try {
        if (this.#rereadPending) {
          this.#rereadPending = false;
          await this.#readOwnPending(keys.stream, room);
          await this.#readOwnPending(keys.retryStream, room);
          continue;
        }
        const reply = (await reader.callBuffer(
          'XREADGROUP',
          'GROUP',
          group,
          consumer,
          'COUNT',
          room,
          'BLOCK',
          this.#i.blockMs,
          'STREAMS',
          keys.stream,
          keys.retryStream,
          '>',
          '>',
        )) as StreamReply;
        for (const [stream, id, fields] of entriesOf(reply)) this.#deliver(stream, id, fields, 1);
        backoff = 0;
      } catch (error) {
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
      const rows = [...entriesOf(reply)];
      if (rows.length === 0) return;
      from = (rows[rows.length - 1] as [string, string, unknown])[1];
      const fresh = rows.filter(([, id]) => !this.#held.has(`${stream} ${id}`));
      if (fresh.length === 0) continue;
      const counts = await this.#deliveryCounts(stream, (fresh[0] as [string, string, unknown])[1], from, rows.length);
      for (const [, id, fields] of fresh) this.#deliver(stream, id, fields, counts.get(id) ?? 1);
      left -= fresh.length;
    }
  }

  async #deliveryCounts(stream: string, start: string, end: string, count: number): Promise<Map<string, number>> {
    const { client, group, consumer } = this.#i;
    const rows = (await client.call('XPENDING', stream, group, start, end, count, consumer)) as [
      string,
      string,
      number,
      number,
    ][];
    return new Map(rows.map((row) => [row[0], Number(row[3])]));
  }

  #deliver(stream: string, entryId: string, fields: Buffer[] | null, deliveryCount: number): void {
    if (this.#held.has(`${stream} ${entryId}`)) return;
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
    this.#held.set(`${stream} ${entryId}`, d);
    this.#i.callbacks.onDelivery(d);
  }

  #settle(d: RedisDelivery): boolean {
    if (d.settled) return false;
    d.settled = true;
    this.#held.delete(`${d.raw.stream} ${d.raw.entryId}`);
    this.#gate.open();
    return true;
  }

  ack(d: RedisDelivery): Promise<void> {
    if (!this.#settle(d)) return Promise.resolve();
    if (!this.#acks) {
      const batch = { main: [] as string[], retry: [] as string[], done: Promise.resolve() };
      batch.done = new Promise<void>((resolve) => setImmediate(resolve)).then(() => this.#flushAcks(batch));
      this.#acks = batch;
    }
    (d.fromRetry ? this.#acks.retry : this.#acks.main).push(d.raw.entryId);
    return this.#acks.done;
  }

  async #flushAcks(batch: { main: string[]; retry: string[] }): Promise<void> {
    this.#acks = undefined;
    const { client, keys, group } = this.#i;
    const writes: Promise<unknown>[] = [];
    if (batch.main.length > 0) writes.push(client.call('XACK', keys.stream, group, ...batch.main));
    if (batch.retry.length > 0) {
      // Only this group reads its retry stream: an acked retry entry is deleted, so the stream stays small.
      writes.push(client.call('XACK', keys.retryStream, group, ...batch.retry));
      writes.push(client.call('XDEL', keys.retryStream, ...batch.retry));
    }
    try {
      await withTimeout(Promise.all(writes), this.#i.opTimeoutMs, 'XACK timed out');
    } catch (error) {
      throw toBusbarError(error, this.#i.secrets, 'XACK failed');
    }
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
      this.#held.set(`${d.raw.stream} ${d.raw.entryId}`, d);
      throw toBusbarError(error, this.#i.secrets, 'Scheduling a retry failed');
    }
    this.#scheduleMove(request.delayMs);
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
    try {
      await this.#refreshHeld();
      for (const stream of [this.#i.keys.stream, this.#i.keys.retryStream]) await this.#claim(stream);
    } catch (error) {
      if (!this.#stopped)
        this.#i.logger.warn(`Claim pass on '${this.#i.topic}' failed`, {
          error: toBusbarError(error, this.#i.secrets, 'XAUTOCLAIM failed'),
        });
    }
  }

  /** Held entries (queued in core or running) get their idle time reset well before the claim threshold. */
  async #refreshHeld(): Promise<void> {
    const due = Date.now() - this.#i.claimIdleMs / 3;
    const ids = new Map<string, string[]>();
    for (const d of this.#held.values()) {
      if (d.heldSince > due) continue;
      d.heldSince = Date.now();
      const list = ids.get(d.raw.stream) ?? [];
      list.push(d.raw.entryId);
      ids.set(d.raw.stream, list);
    }
    for (const [stream, list] of ids)
      await setIdle.run(this.#i.client, [stream], [this.#i.group, this.#i.consumer, 0, ...list]);
  }

  async #claim(stream: string): Promise<void> {
    const { client, group, consumer, claimIdleMs } = this.#i;
    let cursor = '0-0';
    do {
      const room = this.#i.prefetch - this.#held.size;
      if (room <= 0 || this.#stopped) return;
      const [next, entries] = (await callBuffer(
        client,
        'XAUTOCLAIM',
        stream,
        group,
        consumer,
        claimIdleMs,
        cursor,
        'COUNT',
        room,
      )) as [Buffer, [Buffer, Buffer[] | null][], Buffer[]?];
      cursor = next.toString();
      if (entries.length === 0) continue;
      const first = (entries[0] as [Buffer, unknown])[0].toString();
      const last = (entries[entries.length - 1] as [Buffer, unknown])[0].toString();
      const counts = await this.#deliveryCounts(stream, first, last, entries.length);
      for (const [id, fields] of entries) this.#deliver(stream, id.toString(), fields, counts.get(id.toString()) ?? 1);
    } while (cursor !== '0-0');
  }

  #scheduleMove(delayMs: number): void {
    if (this.#stopped) return;
    const at = Date.now() + Math.max(0, delayMs);
    if (this.#moveTimer && at >= this.#moveAt) return;
    clearTimeout(this.#moveTimer);
    this.#moveAt = at;
    this.#moveTimer = setTimeout(() => void this.#move(), Math.max(0, delayMs));
    this.#moveTimer.unref();
  }

  async #move(): Promise<void> {
    this.#moveTimer = undefined;
    this.#moveAt = Number.POSITIVE_INFINITY;
    let next = this.#i.retryPollMs;
    try {
      const { client, keys } = this.#i;
      const [moved, dueIn] = (await moveDue.run(client, [keys.retrySet, keys.retryStream], [100])) as [number, number];
      next = moved === 100 ? 0 : dueIn >= 0 ? Math.min(dueIn, next) : next;
    } catch (error) {
      if (!this.#stopped)
        this.#i.logger.warn(`Moving due retries of '${this.#i.topic}' failed`, {
          error: toBusbarError(error, this.#i.secrets, 'retry move failed'),
        });
    }
    this.#scheduleMove(next);
  }

  async stop(): Promise<void> {
    if (this.#stopped) return;
    this.#stopped = true;
    clearInterval(this.#claimTimer);
    clearTimeout(this.#moveTimer);
    this.#gate.open();
    const grace = this.#i.blockMs + 1_000;
    if (this.#readerId !== undefined && this.#i.client.status === 'ready') {
      // Ends the blocking read at once instead of after blockMs.
      await withTimeout(this.#i.client.call('CLIENT', 'UNBLOCK', this.#readerId), grace, 'unblock').catch(
        () => undefined,
      );
    }
    // With Redis unreachable the read never returns (and ioredis does not reject commands queued while it
    // reconnects, even on disconnect): give up on it after the grace period.
    if (!(await settlesWithin(this.#loop, grace))) this.#i.reader.disconnect();
    await settlesWithin(this.#claiming, grace);
    this.#intakeClosed = true;
  }

  async close(): Promise<void> {
    await this.stop();
    await this.#acks?.done.catch(() => undefined);
    const { client, keys, group, consumer, reader } = this.#i;
    try {
      // A consumer without pending entries is forgotten; one with pending entries stays until others claim them.
      const [main, retry] = (await withTimeout(
        Promise.all([
          client.call('XPENDING', keys.stream, group, '-', '+', 1, consumer),
          client.call('XPENDING', keys.retryStream, group, '-', '+', 1, consumer),
        ]),
        this.#i.opTimeoutMs,
        'XPENDING timed out',
      )) as unknown[][];
      if (main?.length === 0 && retry?.length === 0) {
        await client.call('XGROUP', 'DELCONSUMER', keys.stream, group, consumer);
        await client.call('XGROUP', 'DELCONSUMER', keys.retryStream, group, consumer);
      }
    } catch {
      // Best effort: a leftover consumer entry only shows in XINFO CONSUMERS.
    } finally {
      reader.disconnect();
    }
  }
}
