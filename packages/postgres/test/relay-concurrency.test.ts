import diagnostics from 'node:diagnostics_channel';
import { connect, silentLogger } from '@busbar/core';
import { brokerAvailable, sleep, uniqueName, waitFor } from '@busbar/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createOutbox, createRelay, OUTBOX_CHANNEL, type OutboxEvent } from '../src/index.js';
import { type TestDb, testDb, tx } from './helpers.js';

const ok = await brokerAvailable('postgres');

const ROWS = 10_000;
const KEYS = 100;
const WRITERS = 4;
const PER_TX = 50;

describe.runIf(ok)('two relays on one table', () => {
  let db: TestDb;
  beforeAll(async () => {
    db = await testDb(12);
  });
  afterAll(async () => {
    await db?.close();
  });

  it(`publish ${ROWS} rows, none twice, keeping per-key order`, { timeout: 120_000 }, async () => {
    const { outboxTable } = await db.tables();
    const box = createOutbox({ table: outboxTable });
    const bus = await connect({ url: `memory://${uniqueName('two-relays')}`, logger: silentLogger });
    const topic = uniqueName('orders');
    const received: { id: string; key: string; seq: number }[] = [];
    await bus.subscribe(
      topic,
      (m) => {
        const p = m.payload as { key: string; seq: number };
        received.push({ id: m.id, key: p.key, seq: p.seq });
      },
      { group: 'g', concurrency: 1 },
    );
    const perRelay = new Map<string, number>();
    const onEvent = (e: unknown) => {
      const event = e as OutboxEvent;
      if (event.type === 'published' && event.table === outboxTable)
        perRelay.set(event.relay, (perRelay.get(event.relay) ?? 0) + event.count);
    };
    diagnostics.subscribe(OUTBOX_CHANNEL, onEvent);
    const relays = ['relay-a', 'relay-b'].map((name) =>
      createRelay({ pool: db.pool, bus, table: outboxTable, name, batchSize: 200, pollIntervalMs: 200 }),
    );
    try {
      await Promise.all(relays.map((r) => r.start()));
      // Each key belongs to one writer, so its rows commit in id order and that order is the one to keep.
      await Promise.all(
        Array.from({ length: WRITERS }, async (_, w) => {
          const seq = new Map<string, number>();
          for (let done = 0; done < ROWS / WRITERS; done += PER_TX) {
            await tx(db.pool, async (c) => {
              for (let i = 0; i < PER_TX; i++) {
                const key = `k${((done + i) % (KEYS / WRITERS)) * WRITERS + w}`;
                const n = (seq.get(key) ?? 0) + 1;
                seq.set(key, n);
                await box.add(c, topic, { key, seq: n }, { key });
              }
            });
          }
        }),
      );
      await waitFor(() => received.length >= ROWS, 90_000, `${ROWS} messages (got ${received.length})`);
      await sleep(500);
    } finally {
      await Promise.all(relays.map((r) => r.stop()));
      diagnostics.unsubscribe(OUTBOX_CHANNEL, onEvent);
      await bus.close();
    }
    expect(received).toHaveLength(ROWS);
    expect(new Set(received.map((r) => r.id)).size).toBe(ROWS);
    const last = new Map<string, number>();
    const outOfOrder: string[] = [];
    for (const r of received) {
      if ((last.get(r.key) ?? 0) + 1 !== r.seq) outOfOrder.push(`${r.key}: ${last.get(r.key)} -> ${r.seq}`);
      last.set(r.key, r.seq);
    }
    expect(outOfOrder).toEqual([]);
    expect(last.size).toBe(KEYS);
    const pending = (await db.pool.query(`SELECT count(*)::int AS n FROM ${outboxTable} WHERE published_at IS NULL`))
      .rows[0].n;
    expect(pending).toBe(0);
    // Both relays did part of the work.
    console.log('rows published per relay', Object.fromEntries(perRelay));
    expect(perRelay.get('relay-a')).toBeGreaterThan(0);
    expect(perRelay.get('relay-b')).toBeGreaterThan(0);
    expect((perRelay.get('relay-a') ?? 0) + (perRelay.get('relay-b') ?? 0)).toBe(ROWS);
  });
});
