import net from 'node:net';
import { BusbarError, connect, silentLogger } from '@busbar/core';
import { brokerAvailable, brokerUrls, createFaultProxy, uniqueName } from '@busbar/testing';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createRelay, PostgresIdempotencyStore } from '../src/index.js';
import { type TestDb, testDb } from './helpers.js';

const ok = await brokerAvailable('postgres');
const target = new URL(brokerUrls.postgres);

/** A server that accepts connections and never says a word: a hung or firewalled database. */
async function silentServer(): Promise<{ url: string; close(): Promise<void> }> {
  const sockets = new Set<net.Socket>();
  const server = net.createServer((socket) => {
    sockets.add(socket);
    socket.on('error', () => undefined);
    socket.on('close', () => sockets.delete(socket));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as net.AddressInfo).port;
  return {
    url: `postgres://busbar:secret-pw@127.0.0.1:${port}/test`,
    close: () => {
      for (const s of sockets) s.destroy();
      return new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

async function timed<T>(work: () => Promise<T>): Promise<{ error: unknown; ms: number }> {
  const started = Date.now();
  try {
    await work();
    return { error: undefined, ms: Date.now() - started };
  } catch (error) {
    return { error, ms: Date.now() - started };
  }
}

describe('PostgreSQL timeouts against a silent server', () => {
  it('the idempotency store (own pool) rejects claim with a ConnectionError after connectTimeoutMs', async () => {
    const silent = await silentServer();
    const store = new PostgresIdempotencyStore({ url: silent.url, connectTimeoutMs: 500 });
    try {
      const { error, ms } = await timed(() => store.claim('g:m1', 5_000));
      expect(BusbarError.is(error, 'BUSBAR_CONNECTION')).toBe(true);
      expect((error as BusbarError).retryable).toBe(true);
      expect(String((error as Error).message)).not.toContain('secret-pw');
      expect(ms).toBeGreaterThanOrEqual(400);
      expect(ms).toBeLessThan(1_500);
    } finally {
      await store.close();
      await silent.close();
    }
  });

  it('the idempotency store (a pool without timeouts) still rejects typed within connectTimeoutMs', async () => {
    const silent = await silentServer();
    // The caller's pool waits forever for a connection: busbar's own bound must hold anyway.
    const pool = new pg.Pool({ connectionString: silent.url, max: 2 });
    pool.on('error', () => undefined);
    const store = new PostgresIdempotencyStore({ pool, connectTimeoutMs: 500 });
    try {
      const { error, ms } = await timed(() => store.claim('g:m1', 5_000));
      expect(BusbarError.is(error, 'BUSBAR_CONNECTION')).toBe(true);
      expect((error as BusbarError).retryable).toBe(true);
      expect(ms).toBeLessThan(1_500);
    } finally {
      await store.close();
      await silent.close();
      await pool.end().catch(() => undefined);
    }
  });

  it('the outbox relay: drain() rejects typed within connectTimeoutMs, start()/stop() stay bounded', async () => {
    const silent = await silentServer();
    const bus = await connect({ url: 'memory://', logger: silentLogger });
    try {
      const relay = createRelay({ url: silent.url, bus, connectTimeoutMs: 500, pollIntervalMs: 100 });
      const drained = await timed(() => relay.drain());
      expect(BusbarError.is(drained.error, 'BUSBAR_CONNECTION')).toBe(true);
      expect(drained.ms).toBeLessThan(1_500);
      const started = await timed(() => relay.start());
      expect(started.error).toBeUndefined();
      expect(started.ms).toBeLessThan(1_500);
      const stopped = await timed(() => relay.stop());
      expect(stopped.error).toBeUndefined();
      expect(stopped.ms).toBeLessThan(1_500);
    } finally {
      await bus.close();
      await silent.close();
    }
  });
});

describe.runIf(ok)('PostgreSQL query timeout (database stops answering mid-session)', () => {
  let db: TestDb;
  let table: string;
  beforeAll(async () => {
    db = await testDb(2);
    table = (await db.tables()).idempotencyTable;
  });
  afterAll(async () => {
    await db?.close();
  });

  it('claim rejects with a retryable TimeoutError after queryTimeoutMs; it works again once the database answers', async () => {
    const proxy = await createFaultProxy({ target: { host: target.hostname, port: Number(target.port || 5432) } });
    const store = new PostgresIdempotencyStore({
      url: proxy.url(brokerUrls.postgres),
      table,
      connectTimeoutMs: 1_000,
      queryTimeoutMs: 500,
    });
    try {
      expect(await store.claim(`g:${uniqueName('m')}`, 5_000)).toBe('claimed');
      proxy.blackhole(true);
      const { error, ms } = await timed(() => store.claim(`g:${uniqueName('m')}`, 5_000));
      expect(BusbarError.is(error)).toBe(true);
      expect(['BUSBAR_TIMEOUT', 'BUSBAR_CONNECTION']).toContain((error as BusbarError).code);
      expect((error as BusbarError).retryable).toBe(true);
      expect(ms).toBeLessThan(2_000);
      proxy.blackhole(false);
      // The hung connection was thrown away, not handed to the next claim.
      expect(await store.claim(`g:${uniqueName('m')}`, 5_000)).toBe('claimed');
    } finally {
      await store.close();
      await proxy.close();
    }
  });

  it('a relay batch rejects with a TimeoutError after queryTimeoutMs and stop() stays bounded', async () => {
    const proxy = await createFaultProxy({ target: { host: target.hostname, port: Number(target.port || 5432) } });
    const bus = await connect({ url: 'memory://', logger: silentLogger });
    const { outboxTable } = await db.tables();
    const relay = createRelay({
      url: proxy.url(brokerUrls.postgres),
      bus,
      table: outboxTable,
      connectTimeoutMs: 1_000,
      queryTimeoutMs: 500,
      pollIntervalMs: 60_000,
      cleanupIntervalMs: 0,
    });
    try {
      await relay.start();
      expect(await relay.drain()).toBe(0);
      proxy.blackhole(true);
      const drained = await timed(() => relay.drain());
      expect(BusbarError.is(drained.error, 'BUSBAR_TIMEOUT')).toBe(true);
      expect((drained.error as BusbarError).retryable).toBe(true);
      expect(drained.ms).toBeLessThan(1_500);
      const stopped = await timed(() => relay.stop());
      expect(stopped.ms).toBeLessThan(2_500);
    } finally {
      await relay.stop();
      await bus.close();
      await proxy.close();
    }
  });
});
