import { getEventListeners } from 'node:events';
import { type Bus, BusbarError, connect, silentLogger } from '@busbar/core';
import { brokerAvailable, brokerUrls, createFaultProxy, uniqueName, waitFor } from '@busbar/testing';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { driver } from '../src/index.js';
import { requestStreamKey } from '../src/keys.js';

const ok = await brokerAvailable('redis');
const requestKey = (topic: string) => requestStreamKey('busbar:', topic);

type Entry = [string, string[]];
type ReadReply = [string, Entry[]][] | null;

/** The first entry of a read reply (failing the test when there is none). */
const firstEntry = (reply: ReadReply): Entry => {
  const entry = reply?.[0]?.[1][0];
  if (!entry) throw new Error('no entry read');
  return entry;
};

/** An entry's fields as an object (the last value of a repeated name). */
const fieldsOf = (fields: string[]): Record<string, string> => {
  const out: Record<string, string> = {};
  for (let i = 0; i + 1 < fields.length; i += 2) out[fields[i] as string] = fields[i + 1] as string;
  return out;
};

/** After a fault: waits until a request on `topic` is answered again (the reader reconnects and reads on). */
async function answeredAgain(bus: Bus, topic: string): Promise<void> {
  await waitFor(
    async () => (await bus.request(topic, 'after', { timeoutMs: 1_000 }).catch((e: unknown) => e)) === 'after',
    15_000,
    'a request answered after the cut',
  );
}

describe.runIf(ok)('redis request/reply (interop with plain ioredis)', () => {
  let raw: Redis;
  const buses: Bus[] = [];
  const open = async (): Promise<Bus> => {
    const bus = await connect({ url: brokerUrls.redis, driver, logger: silentLogger });
    buses.push(bus);
    return bus;
  };

  beforeAll(() => {
    raw = new Redis(brokerUrls.redis);
  });
  afterAll(async () => {
    await Promise.all(buses.map((b) => b.close().catch(() => undefined)));
    raw.disconnect();
  });

  it('a plain ioredis service answers a busbar request (XREADGROUP, XADD to reply-to with the correlation id)', async () => {
    const topic = uniqueName('rr-svc');
    const stream = requestKey(topic);
    await raw.xgroup('CREATE', stream, 'svc', '$', 'MKSTREAM');
    const bus = await open();
    const service = (async () => {
      const reader = new Redis(brokerUrls.redis);
      try {
        const reply = (await reader.xreadgroup(
          'GROUP',
          'svc',
          'one',
          'COUNT',
          1,
          'BLOCK',
          5_000,
          'STREAMS',
          stream,
          '>',
        )) as ReadReply;
        const [entryId, fields] = firstEntry(reply);
        const f = fieldsOf(fields);
        const n = (JSON.parse(f.body as string) as { n: number }).n;
        await raw.xadd(
          f['reply-to'] as string,
          '*',
          'correlation-id',
          f['correlation-id'] as string,
          'body',
          JSON.stringify({ doubled: n * 2, asked: f['h:x-asked-by'] }),
          'content-type',
          'application/json',
        );
        await raw.xack(stream, 'svc', entryId);
        return f;
      } finally {
        reader.disconnect();
      }
    })();
    const answer = await bus.request(topic, { n: 21 }, { timeoutMs: 5_000, headers: { 'x-asked-by': 'test' } });
    expect(answer).toEqual({ doubled: 42, asked: 'test' });
    const request = await service;
    expect(request['content-type']).toBe('application/json');
    expect(request.id).toBeTruthy();
    // The reply stream lives while the bus does (with a TTL, for a crash), and is deleted at close.
    const replyTo = request['reply-to'] as string;
    expect(await raw.exists(replyTo)).toBe(1);
    const ttl = await raw.pttl(replyTo);
    expect(ttl).toBeGreaterThan(0);
    expect(ttl).toBeLessThanOrEqual(60_000);
    await bus.close();
    expect(await raw.exists(replyTo)).toBe(0);
  });

  it('a plain ioredis client asks a busbar responder (XADD with reply-to, XREAD its reply stream)', async () => {
    const topic = uniqueName('rr-client');
    const bus = await open();
    await bus.respond(topic, (m) => ({ echo: m.payload, header: m.headers['x-h'], contentType: m.contentType }));
    const replyTo = `app:replies:${uniqueName('c')}`;
    // Responders reply with NOMKSTREAM (no key for a requester that is gone): the client creates its stream first.
    const start = await raw.xadd(replyTo, '*', 'open', '1');
    await raw.pexpire(replyTo, 60_000);
    await raw.xadd(
      requestKey(topic),
      '*',
      'body',
      '{"q":"hi"}',
      'content-type',
      'application/json',
      'h:x-h',
      'v1',
      'reply-to',
      replyTo,
      'correlation-id',
      'corr-1',
    );
    const read = (await raw.xread('BLOCK', 5_000, 'STREAMS', replyTo, start as string)) as ReadReply;
    const f = fieldsOf(firstEntry(read)[1]);
    expect(f['correlation-id']).toBe('corr-1');
    expect(f['content-type']).toBe('application/json');
    expect(JSON.parse(f.body as string)).toEqual({ echo: { q: 'hi' }, header: 'v1', contentType: 'application/json' });
    await raw.del(replyTo);
  });

  it('a failed request answers with busbar-error headers a plain client can read', async () => {
    const topic = uniqueName('rr-err');
    const bus = await open();
    await bus.respond(topic, () => {
      throw new RangeError('too big');
    });
    const replyTo = `app:replies:${uniqueName('e')}`;
    const start = await raw.xadd(replyTo, '*', 'open', '1');
    await raw.xadd(requestKey(topic), '*', 'body', '1', 'reply-to', replyTo, 'correlation-id', 'c2');
    const read = (await raw.xread('BLOCK', 5_000, 'STREAMS', replyTo, start as string)) as ReadReply;
    const f = fieldsOf(firstEntry(read)[1]);
    expect(f['h:busbar-error']).toBe('RangeError');
    expect(f['h:busbar-error-message']).toBe('too big');
    await raw.del(replyTo);
  });

  it('no responder: NoRespondersError at once; after a responder closes too; the bus still works', async () => {
    const bus = await open();
    const topic = uniqueName('rr-none');
    const t0 = Date.now();
    const none = await bus.request(topic, 1, { timeoutMs: 5_000 }).catch((e: unknown) => e);
    expect(BusbarError.is(none, 'BUSBAR_NO_RESPONDERS')).toBe(true);
    expect((none as BusbarError).retryable).toBe(true);
    expect(Date.now() - t0).toBeLessThan(1_000);
    // An ungrouped responder's group is its own: destroyed at close, so nobody serves the topic afterwards.
    const responder = await bus.respond(topic, (m) => m.payload);
    expect(await bus.request(topic, 'yes', { timeoutMs: 5_000 })).toBe('yes');
    await responder.close();
    expect(await raw.xinfo('GROUPS', requestKey(topic))).toEqual([]);
    await new Promise((r) => setTimeout(r, 1_100)); // the "somebody serves it" cache
    const after = await bus.request(topic, 1, { timeoutMs: 5_000 }).catch((e: unknown) => e);
    expect(BusbarError.is(after, 'BUSBAR_NO_RESPONDERS')).toBe(true);
    const other = uniqueName('rr-ok');
    await bus.respond(other, (m) => m.payload);
    expect(await bus.request(other, 'still', { timeoutMs: 5_000 })).toBe('still');
  });

  it('every ungrouped responder answers; one member of a group does', async () => {
    const bus = await open();
    const topic = uniqueName('rr-fan');
    const calls: string[] = [];
    await bus.respond(topic, () => {
      calls.push('a');
      return 'a';
    });
    await bus.respond(topic, () => {
      calls.push('b');
      return 'b';
    });
    const group = uniqueName('g');
    for (const name of ['g1', 'g2']) {
      await bus.respond(
        topic,
        () => {
          calls.push(name);
          return name;
        },
        { group },
      );
    }
    const first = await bus.request(topic, 1, { timeoutMs: 5_000 });
    expect(['a', 'b', 'g1', 'g2']).toContain(first);
    await waitFor(() => calls.length >= 3, 5_000, 'three responders');
    await new Promise((r) => setTimeout(r, 200));
    expect(calls.filter((c) => c === 'a' || c === 'b').sort()).toEqual(['a', 'b']);
    expect(calls.filter((c) => c === 'g1' || c === 'g2')).toHaveLength(1);
  });

  it('nothing per request stays behind: no abort listener, no pending entry after the request settles', async () => {
    const bus = await open();
    const topic = uniqueName('rr-clean');
    await bus.respond(topic, async (m) => {
      if (m.payload === 0) await new Promise((r) => setTimeout(r, 400));
      return m.payload;
    });
    const signal = new AbortController().signal;
    const replies = await Promise.all(
      Array.from({ length: 20 }, (_, n) => bus.request(topic, n + 1, { timeoutMs: 5_000, signal })),
    );
    expect(replies).toEqual(Array.from({ length: 20 }, (_, n) => n + 1));
    const slow = await bus.request(topic, 0, { timeoutMs: 100, signal }).catch((e: unknown) => e);
    expect(BusbarError.is(slow, 'BUSBAR_TIMEOUT')).toBe(true);
    expect(getEventListeners(signal, 'abort')).toHaveLength(0);
  });

  it('a silent Redis: requests time out typed and in time; after a cut they are answered again; close is bounded', {
    timeout: 30_000,
  }, async () => {
    const target = new URL(brokerUrls.redis);
    const proxy = await createFaultProxy({ target: { host: target.hostname, port: Number(target.port || 6379) } });
    try {
      const responder = await open();
      const topic = uniqueName('rr-fault');
      const seen: unknown[] = [];
      await responder.respond(topic, (m) => {
        seen.push(m.payload);
        return m.payload;
      });
      const bus = await connect({
        url: proxy.url(brokerUrls.redis),
        driver,
        logger: silentLogger,
        closeTimeoutMs: 3_000,
      });
      expect(await bus.request(topic, 'before', { timeoutMs: 5_000 })).toBe('before');
      await new Promise((r) => setTimeout(r, 1_100)); // past the "somebody serves it" cache: XINFO goes first
      proxy.blackhole(true);
      const t0 = Date.now();
      const silent = await bus.request(topic, 'lost', { timeoutMs: 500 }).catch((e: unknown) => e);
      expect(BusbarError.is(silent, 'BUSBAR_TIMEOUT')).toBe(true);
      expect(Date.now() - t0).toBeLessThan(1_500);
      proxy.blackhole(false);
      proxy.cutAll();
      // The reply reader reconnects and reads on: a request goes through again.
      await answeredAgain(bus, topic);
      // The request that timed out while Redis was silent (stuck in XINFO) is not sent once it answers again.
      expect(seen).not.toContain('lost');
      proxy.blackhole(true);
      const closing = Date.now();
      await bus.close();
      expect(Date.now() - closing).toBeLessThan(4_000);
    } finally {
      await proxy.close();
    }
  });

  it('a Redis that goes silent while a reply is written: the XADD fails typed within publishTimeoutMs, and after the cut the responder answers again', {
    timeout: 30_000,
  }, async () => {
    const target = new URL(brokerUrls.redis);
    const proxy = await createFaultProxy({ target: { host: target.hostname, port: Number(target.port || 6379) } });
    const warnings: { message: string; at: number; error: unknown }[] = [];
    const record = (message: string, fields?: Record<string, unknown>) =>
      void warnings.push({ message, at: Date.now(), error: fields?.error });
    try {
      const responder = await connect({
        url: proxy.url(brokerUrls.redis),
        driver,
        logger: { debug() {}, info() {}, warn: record, error: record },
        publishTimeoutMs: 500,
        closeTimeoutMs: 2_000,
      });
      const topic = uniqueName('rr-silent-reply');
      let silencedAt = 0;
      await responder.respond(topic, (m) => {
        if (m.payload === 'silence') {
          proxy.blackhole(true);
          silencedAt = Date.now();
        }
        return m.payload;
      });
      const bus = await open();
      expect(await bus.request(topic, 'before', { timeoutMs: 5_000 })).toBe('before');
      const lost = await bus.request(topic, 'silence', { timeoutMs: 2_000 }).catch((e: unknown) => e);
      expect(BusbarError.is(lost, 'BUSBAR_TIMEOUT')).toBe(true);
      await waitFor(() => warnings.some((w) => w.message.includes('Replying on')), 5_000, 'the failed reply logged');
      const failed = warnings.find((w) => w.message.includes('Replying on'));
      expect(String(failed?.error)).toContain('XADD of the reply timed out');
      // Bounded by publishTimeoutMs (500 ms), with timer slack, not by the requester's 2 s.
      expect((failed?.at ?? 0) - silencedAt).toBeLessThan(1_500);
      proxy.blackhole(false);
      proxy.cutAll();
      await answeredAgain(bus, topic);
      await responder.close();
    } finally {
      await proxy.close();
    }
  });

  it('a reply to a requester that is gone creates no key; a request without reply-to is dropped; the bus still works', async () => {
    const bus = await open();
    const topic = uniqueName('rr-gone');
    let served = 0;
    await bus.respond(topic, (m) => {
      served++;
      return m.payload;
    });
    const gone = `app:replies:${uniqueName('gone')}`;
    await raw.xadd(requestKey(topic), '*', 'body', '1', 'reply-to', gone, 'correlation-id', 'x');
    await raw.xadd(requestKey(topic), '*', 'body', '2'); // no reply-to: nobody to answer
    await waitFor(() => served >= 1, 5_000, 'the request to a gone requester');
    await new Promise((r) => setTimeout(r, 200));
    expect(await raw.exists(gone)).toBe(0);
    expect(served).toBe(1);
    expect(await bus.request(topic, 'ok', { timeoutMs: 5_000 })).toBe('ok');
    // Answered requests are acked: nothing stays pending in the group.
    await waitFor(
      async () => {
        const groups = (await raw.xinfo('GROUPS', requestKey(topic))) as unknown[][];
        const pending = groups.map((g) => Number(g[g.indexOf('pending') + 1]));
        return pending.every((p) => p === 0);
      },
      5_000,
      'no pending requests',
    );
  });

  it('request streams are trimmed (MAXLEN ~ 10000) and a late reply is dropped', async () => {
    const bus = await open();
    const topic = uniqueName('rr-trim');
    await raw.xgroup('CREATE', requestKey(topic), 'silent', '$', 'MKSTREAM');
    // Requests nobody answered before: 10,500 of them.
    const fill = raw.pipeline();
    for (let n = 0; n < 10_500; n++) fill.xadd(requestKey(topic), '*', 'body', String(n));
    await fill.exec();
    // Nobody answers: 40 requests time out; each XADD trims the stream.
    const outcomes = await Promise.all(
      Array.from({ length: 40 }, (_, n) => bus.request(topic, n, { timeoutMs: 300 }).catch((e: unknown) => e)),
    );
    for (const e of outcomes) expect(BusbarError.is(e, 'BUSBAR_TIMEOUT')).toBe(true);
    const length = await raw.xlen(requestKey(topic));
    expect(length).toBeGreaterThanOrEqual(10_000);
    expect(length).toBeLessThan(10_200);
    const [id, fields] = ((await raw.xrevrange(requestKey(topic), '+', '-', 'COUNT', 1)) as Entry[])[0] as Entry;
    const f = fieldsOf(fields);
    // A late reply: dropped, and the bus keeps answering.
    await raw.xadd(f['reply-to'] as string, '*', 'correlation-id', f['correlation-id'] as string, 'body', '"late"');
    expect(id).toBeTruthy();
    const live = uniqueName('rr-live');
    await bus.respond(live, (m) => m.payload);
    expect(await bus.request(live, 'fresh', { timeoutMs: 5_000 })).toBe('fresh');
    await raw.del(requestKey(topic));
  });
});
