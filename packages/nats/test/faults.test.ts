import { connect, silentLogger } from '@busbar/core';
import { brokerAvailable, brokerUrls, createFaultProxy, sleep, uniqueName, waitFor } from '@busbar/testing';
import { afterAll, describe, expect, it } from 'vitest';
import { driver } from '../src/index.js';
import { cleanupStreams } from './helpers.js';
import { privateServer } from './server.js';

const ok = await brokerAvailable('nats');

interface Tally {
  readonly confirmed: Set<string>;
  readonly received: Map<string, number>;
}

function figures(t: Tally): { confirmed: number; lost: number; duplicates: number } {
  let lost = 0;
  let duplicates = 0;
  for (const id of t.confirmed) if (!t.received.has(id)) lost++;
  for (const n of t.received.values()) duplicates += n - 1;
  return { confirmed: t.confirmed.size, lost, duplicates };
}

/**
 * Publishes `total` messages with fixed ids in batches, `parallel` batches at once, re-sending a failed batch (same
 * ids). `gate`, when given, is awaited before each batch: a test holds the publishers there while it breaks the
 * server, so the break falls mid-run however fast this machine publishes.
 */
async function publishAll(
  publish: (entries: { payload: number; id: string }[]) => Promise<string[]>,
  run: string,
  total: number,
  confirmed: Set<string>,
  parallel = 4,
  batch = 50,
  gate?: () => Promise<void> | undefined,
): Promise<void> {
  let next = 0;
  const worker = async () => {
    while (next < total) {
      await gate?.();
      if (next >= total) return;
      const start = next;
      next += batch;
      const entries = Array.from({ length: Math.min(batch, total - start) }, (_, i) => ({
        payload: start + i,
        id: `${run}-${start + i}`,
      }));
      for (let attempt = 0; ; attempt++) {
        try {
          for (const id of await publish(entries)) confirmed.add(id);
          break;
        } catch (error) {
          if (attempt > 100) throw error;
          await sleep(100);
        }
      }
    }
  };
  await Promise.all(Array.from({ length: parallel }, worker));
}

describe.runIf(ok)('nats faults', () => {
  const prefixes: string[] = [];
  afterAll(async () => {
    await cleanupStreams(prefixes);
  });

  it('10,000 messages through a group while the connections are cut 3 times: none lost', async () => {
    const prefix = uniqueName('nf');
    prefixes.push(prefix);
    const topic = `${prefix}.orders`;
    const target = new URL(brokerUrls.nats);
    const proxy = await createFaultProxy({ target: { host: target.hostname, port: Number(target.port || 4222) } });
    const options = {
      url: proxy.url(brokerUrls.nats),
      driver,
      logger: silentLogger,
      reconnectTimeWaitMs: 100,
      ackWaitMs: 5_000,
      publishTimeoutMs: 5_000,
    };
    const consumerBus = await connect(options);
    const producerBus = await connect(options);
    const t: Tally = { confirmed: new Set(), received: new Map() };
    await consumerBus.subscribe<number>(
      topic,
      async (m) => {
        t.received.set(m.id, (t.received.get(m.id) ?? 0) + 1);
      },
      { group: 'workers', concurrency: 16, prefetch: 256 },
    );
    let cuts = 0;
    const cutter = setInterval(() => {
      if (cuts < 3 && t.confirmed.size >= (cuts + 1) * 2_500) {
        cuts++;
        proxy.cutAll();
      }
    }, 5);
    try {
      await publishAll((entries) => producerBus.publishBatch(topic, entries), prefix, 10_000, t.confirmed);
      await waitFor(() => [...t.confirmed].every((id) => t.received.has(id)), 60_000, 'every confirmed message');
    } finally {
      clearInterval(cutter);
    }
    await sleep(500);
    const result = { ...figures(t), cuts };
    console.log('[nats fault proxy]', JSON.stringify(result));
    expect(cuts).toBe(3);
    expect(result.confirmed).toBe(10_000);
    expect(result.lost).toBe(0);
    // Health saw the cuts and is back up.
    await waitFor(
      () => consumerBus.health().status === 'up' && producerBus.health().status === 'up',
      10_000,
      'health up',
    );
    await producerBus.close();
    await consumerBus.close();
    await proxy.close();
  }, 120_000);

  it('a private file-store nats-server restarted mid-run: nothing lost, consumers resume', async () => {
    const server = await privateServer();
    try {
      const topic = `${uniqueName('nr')}.events`;
      const options = {
        url: server.url,
        driver,
        logger: silentLogger,
        reconnectTimeWaitMs: 100,
        ackWaitMs: 5_000,
        publishTimeoutMs: 3_000,
      };
      const consumerBus = await connect(options);
      const producerBus = await connect(options);
      const t: Tally = { confirmed: new Set(), received: new Map() };
      await consumerBus.subscribe<number>(
        topic,
        async (m) => {
          t.received.set(m.id, (t.received.get(m.id) ?? 0) + 1);
        },
        { group: 'workers', concurrency: 8 },
      );
      let restarted = false;
      let confirmedAtStop = 0;
      // Once 1,000 are confirmed the publishers wait until the server is down, then publish into the outage
      // (retrying) and across the restart: a fast machine used to publish all 3,000 before the stop.
      let stopping: Promise<void> | undefined;
      const stopAt1000 = () => {
        if (stopping === undefined && t.confirmed.size >= 1_000) {
          confirmedAtStop = t.confirmed.size;
          stopping = server.stop();
        }
        return stopping;
      };
      const publishing = publishAll(
        (entries) => producerBus.publishBatch(topic, entries),
        'restart',
        3_000,
        t.confirmed,
        2,
        50,
        stopAt1000,
      );
      await waitFor(() => stopping !== undefined, 30_000, '1,000 confirmed');
      await stopping;
      await sleep(500);
      await server.start();
      restarted = true;
      await publishing;
      await waitFor(() => [...t.confirmed].every((id) => t.received.has(id)), 60_000, 'every confirmed message');
      // Consumers resume: a message published after the restart still arrives.
      const late = await producerBus.publish(topic, -1);
      await waitFor(() => t.received.has(late), 20_000, 'a message published after the restart');
      const result = { ...figures(t), confirmedAtStop };
      console.log('[nats server restart]', JSON.stringify(result));
      expect(restarted).toBe(true);
      expect(confirmedAtStop).toBeLessThan(3_000);
      expect(result.lost).toBe(0);
      await producerBus.close();
      await consumerBus.close();
    } finally {
      await server.destroy();
    }
  }, 120_000);

  it('a handler slower than the ack wait is not redelivered to another member while it works', async () => {
    const prefix = uniqueName('ns');
    prefixes.push(prefix);
    const topic = `${prefix}.slow`;
    const options = { url: brokerUrls.nats, driver, logger: silentLogger, ackWaitMs: 1_000 };
    const a = await connect(options);
    const b = await connect(options);
    const runs: string[] = [];
    let done = 0;
    const handler = (member: string) => async () => {
      runs.push(member);
      await sleep(3_500);
      done++;
    };
    await a.subscribe(topic, handler('a'), { group: 'g' });
    await b.subscribe(topic, handler('b'), { group: 'g' });
    await a.publish(topic, 'slow');
    await waitFor(() => done >= 1, 10_000, 'the slow handler to finish');
    // Two more ack waits: an unacked message would come back by now.
    await sleep(2_500);
    expect(runs.length).toBe(1);
    expect(done).toBe(1);
    await a.close();
    await b.close();
  }, 30_000);
  it('stream and consumer declarations wait up to connectTimeoutMs, not nats.js 5 s, for a slow JetStream', async () => {
    // A JetStream cluster electing a leader answers its API late; with nats.js's default API timeout (5 s) a
    // subscribe right after a rolling restart failed with TIMEOUT although connectTimeoutMs was 20 s.
    const prefix = uniqueName('nl');
    prefixes.push(prefix);
    const topic = `${prefix}.late`;
    const target = new URL(brokerUrls.nats);
    const proxy = await createFaultProxy({ target: { host: target.hostname, port: Number(target.port || 4222) } });
    const bus = await connect({
      url: proxy.url(brokerUrls.nats),
      driver,
      logger: silentLogger,
      connectTimeoutMs: 15_000,
    });
    try {
      const got: string[] = [];
      // The first round trip takes about 6 s: more than nats.js's API timeout, less than connectTimeoutMs.
      proxy.setLatency(3_000);
      const declared = bus.subscribe<string>(topic, async (m) => void got.push(m.payload), { group: 'g' });
      await sleep(7_000);
      proxy.setLatency(0);
      await expect(declared).resolves.toBeDefined();
      // The bus works afterwards.
      await bus.publish(topic, 'after');
      await waitFor(() => got.includes('after'), 10_000, 'the message after the slow declarations');
    } finally {
      await bus.close();
      proxy.close();
    }
  }, 90_000);
  it('a JetStream API answer lost in a server restart is asked for again, not waited out', async () => {
    // The request sits unread in a paused server that is then killed: its answer never comes. CI saw a
    // subscribe fail this way after a cluster's rolling restart, having waited its whole connectTimeoutMs.
    const server = await privateServer();
    const bus = await connect({
      url: server.url,
      driver,
      logger: silentLogger,
      connectTimeoutMs: 20_000,
      reconnectTimeWaitMs: 100,
    });
    try {
      const topic = uniqueName('lost');
      const got: string[] = [];
      await server.signal('SIGSTOP');
      const started = Date.now();
      const declared = bus.subscribe<string>(topic, async (m) => void got.push(m.payload), { group: 'g' });
      declared.catch(() => undefined);
      await sleep(300);
      await server.signal('SIGKILL');
      await server.start();
      await expect(declared).resolves.toBeDefined();
      // Asked again after 5 s (before the fix, it failed with TIMEOUT after the 20 s).
      expect(Date.now() - started).toBeLessThan(15_000);
      await bus.publish(topic, 'after');
      await waitFor(() => got.includes('after'), 10_000, 'the message after the lost answer');
    } finally {
      await bus.close();
      await server.destroy();
    }
  }, 60_000);
});

describe.runIf(ok || process.env.CI === 'true')('nats: a connect that timed out', () => {
  it('keeps no socket to a server that accepted TCP and never answered', async () => {
    const target = new URL(brokerUrls.nats);
    const proxy = await createFaultProxy({ target: { host: target.hostname, port: Number(target.port || 4222) } });
    try {
      proxy.blackhole(true);
      for (let i = 0; i < 3; i++) {
        const error = await connect({
          url: proxy.url(brokerUrls.nats),
          driver,
          connectTimeoutMs: 500,
          logger: silentLogger,
        }).catch((e: unknown) => e);
        expect((error as { code?: string }).code).toBe('BUSBAR_CONNECTION');
      }
      await sleep(500);
      // nats.js left each failed dial's socket open (one file descriptor per try).
      expect(proxy.connections).toBe(0);
    } finally {
      await proxy.close();
    }
  });
});
