import { callBuffer, type RedisClient } from './client.js';
import type { RedisDelivery } from './delivery.js';
import { setIdle } from './scripts.js';
import { deliveryCounts } from './topology.js';

export interface ClaimContext {
  readonly client: RedisClient;
  readonly group: string;
  readonly consumer: string;
  readonly claimIdleMs: number;
}

/**
 * Held entries (queued in core or running) get their idle time reset well
 * before the claim threshold, so a member that holds entries longer than the
 * threshold (prefetch > concurrency) does not lose them to another member.
 */
export async function refreshHeld(ctx: ClaimContext, held: Iterable<RedisDelivery>): Promise<void> {
  const due = Date.now() - ctx.claimIdleMs / 3;
  const ids = new Map<string, string[]>();
  for (const d of held) {
    if (d.heldSince > due) continue;
    d.heldSince = Date.now();
    const list = ids.get(d.raw.stream) ?? [];
    list.push(d.raw.entryId);
    ids.set(d.raw.stream, list);
  }
  for (const [stream, list] of ids) await setIdle.run(ctx.client, [stream], [ctx.group, ctx.consumer, 0, ...list]);
}

/**
 * Takes over entries idle longer than the threshold (a dead member's, or
 * released ones) with XAUTOCLAIM, as much as there is room for. XAUTOCLAIM
 * raises their delivery count, which becomes the attempt; since Redis 7 it
 * also drops entries deleted or trimmed while pending from the pending list,
 * and older servers return them without fields (the caller acks those away).
 */
export async function claimIdle(
  ctx: ClaimContext,
  stream: string,
  sink: { room(): number; deliver(id: string, fields: Buffer[] | null, deliveryCount: number): void },
): Promise<'done' | 'full'> {
  const { client, group, consumer, claimIdleMs } = ctx;
  let cursor = '0-0';
  do {
    const room = sink.room();
    // Out of room before the end of the pending list: more may wait (the caller claims again once room frees).
    if (room <= 0) return 'full';
    const reply = await callBuffer(client, 'XAUTOCLAIM', stream, group, consumer, claimIdleMs, cursor, 'COUNT', room);
    const [next, entries] = reply as [Buffer, [Buffer, Buffer[] | null][]];
    cursor = next.toString();
    if (entries.length === 0) continue;
    const first = (entries[0] as [Buffer, unknown])[0].toString();
    const last = (entries[entries.length - 1] as [Buffer, unknown])[0].toString();
    const counts = await deliveryCounts(client, { stream, group, consumer }, first, last, entries.length);
    for (const [id, fields] of entries) sink.deliver(id.toString(), fields, counts.get(id.toString()) ?? 1);
  } while (cursor !== '0-0');
  return 'done';
}
