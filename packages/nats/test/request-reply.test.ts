import { type Bus, BusbarError, connect, silentLogger } from '@busbar/core';
import { brokerAvailable, brokerUrls, freePort, uniqueName, waitFor } from '@busbar/testing';
import { headers, type NatsConnection, connect as natsConnect } from 'nats';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { driver, natsOptions } from '../src/index.js';
import { cleanupStreams } from './helpers.js';
import { type PrivateServer, privateServer } from './server.js';

const ok = await brokerAvailable('nats');
const enc = new TextEncoder();
const dec = new TextDecoder();
const json = (value: unknown) => enc.encode(JSON.stringify(value));

describe.runIf(ok)('nats request/reply', () => {
  let nc: NatsConnection;
  const buses: Bus[] = [];
  const segments: string[] = [];
  /** A topic in a first segment of its own (streams created for it are deleted afterwards). */
  const topic = (label: string) => {
    const segment = uniqueName('rr');
    segments.push(segment);
    return `${segment}.${label}`;
  };
  const bus = async (options: Record<string, unknown> = {}) => {
    const b = await connect({ url: brokerUrls.nats, driver, logger: silentLogger, ...options });
    buses.push(b);
    return b;
  };

  beforeAll(async () => {
    nc = await natsConnect({ servers: new URL(brokerUrls.nats).host });
  });
  afterAll(async () => {
    for (const b of buses) await b.close();
    await nc?.close();
    await cleanupStreams(segments);
  });

  it('a raw nats.js nc.request() is answered by a busbar responder on <requestPrefix><topic>', async () => {
    const b = await bus();
    const name = topic('price');
    await b.respond(name, (m) => ({ echo: m.payload, trace: m.headers['x-trace'], id: m.id }), { group: 'pricing' });
    const h = headers();
    h.set('x-trace', 't-1');
    h.set('Content-Type', 'application/json');
    const reply = await nc.request(`_busbar.rr.${name}`, json({ sku: 'a' }), { timeout: 5_000, headers: h });
    const body = JSON.parse(dec.decode(reply.data)) as { echo: unknown; trace: string; id: string };
    expect(body.echo).toEqual({ sku: 'a' });
    expect(body.trace).toBe('t-1');
    // No busbar id on a foreign request: its reply inbox, unique per request, is its identity.
    expect(body.id.startsWith('_INBOX.')).toBe(true);
    expect(reply.headers?.get('Content-Type')).toBe('application/json');
  });

  it('a busbar request is answered by a raw msg.respond(), headers and errors included', async () => {
    const b = await bus();
    const name = topic('quote');
    let seen: { ct: string | undefined; msgId: string | undefined; trace: string | undefined } | undefined;
    const sub = nc.subscribe(`_busbar.rr.${name}`, {
      queue: 'raw',
      callback: (_error, m) => {
        seen = {
          ct: m.headers?.get('Content-Type'),
          msgId: m.headers?.get('Nats-Msg-Id'),
          trace: m.headers?.get('x-trace'),
        };
        const payload = JSON.parse(dec.decode(m.data)) as { n: number };
        if (payload.n < 0) {
          const failed = headers();
          failed.set('busbar-error', 'NEGATIVE');
          failed.set('busbar-error-message', 'n must not be negative');
          m.respond(new Uint8Array(0), { headers: failed });
          return;
        }
        const rh = headers();
        rh.set('Content-Type', 'application/json');
        m.respond(json({ double: payload.n * 2 }), { headers: rh });
      },
    });
    await nc.flush();
    try {
      expect(await b.request(name, { n: 21 }, { timeoutMs: 5_000, headers: { 'x-trace': 'abc' } })).toEqual({
        double: 42,
      });
      expect(seen?.ct).toBe('application/json');
      expect(seen?.trace).toBe('abc');
      expect(seen?.msgId?.startsWith(`${name}:`)).toBe(true);
      const failed = await b.request(name, { n: -1 }, { timeoutMs: 5_000 }).catch((e: unknown) => e);
      expect(BusbarError.is(failed, 'BUSBAR_REMOTE')).toBe(true);
      expect((failed as { remoteCode?: string }).remoteCode).toBe('NEGATIVE');
    } finally {
      sub.unsubscribe();
    }
  });

  it('no responder: fails fast with NoRespondersError (the server 503), and the bus still works', async () => {
    const b = await bus();
    const t0 = Date.now();
    const nobody = await b.request(topic('nobody'), 1, { timeoutMs: 10_000 }).catch((e: unknown) => e);
    expect(BusbarError.is(nobody, 'BUSBAR_NO_RESPONDERS')).toBe(true);
    expect((nobody as BusbarError).retryable).toBe(true);
    expect(Date.now() - t0).toBeLessThan(2_000);
    const name = topic('after');
    await b.respond(name, (m) => m.payload);
    expect(await b.request(name, 'still', { timeoutMs: 5_000 })).toBe('still');
  });

  it("requestPrefix '': requests use the topic itself as the subject, both directions with raw nats.js", async () => {
    const b = await bus({ requestPrefix: '' });
    const served = topic('served');
    await b.respond(served, (m) => ({ got: m.payload }));
    const reply = await nc.request(served, json('hi'), { timeout: 5_000 });
    expect(JSON.parse(dec.decode(reply.data))).toEqual({ got: 'hi' });
    const answered = topic('answered');
    const sub = nc.subscribe(answered, { callback: (_e, m) => m.respond(json({ raw: true })) });
    await nc.flush();
    try {
      expect(await b.request(answered, 1, { timeoutMs: 5_000 })).toEqual({ raw: true });
    } finally {
      sub.unsubscribe();
    }
  });

  it("requestPrefix '': a request subject a stream captures is a ConfigError, before and after sending", async () => {
    const b = await bus({ requestPrefix: '' });
    const jsm = await nc.jetstreamManager();
    // A stream capturing the subject before anything starts: respond and request refuse, nothing is stored.
    const captured = topic('captured');
    const stream = `BUSBAR_${captured.split('.')[0]}`;
    await jsm.streams.add({ name: stream, subjects: [`${captured.split('.')[0]}.>`] });
    const refused = await b.respond(captured, () => 1).catch((e: unknown) => e);
    expect(BusbarError.is(refused, 'BUSBAR_CONFIG')).toBe(true);
    expect((refused as Error).message).toContain(stream);
    const notSent = await b.request(captured, 1, { timeoutMs: 5_000 }).catch((e: unknown) => e);
    expect(BusbarError.is(notSent, 'BUSBAR_CONFIG')).toBe(true);
    expect((await jsm.streams.info(stream)).state.messages).toBe(0);
    // A stream created after the subject was checked: JetStream answers with a PubAck, taken for what it is.
    const later = topic('later');
    expect(
      BusbarError.is(await b.request(later, 1, { timeoutMs: 5_000 }).catch((e: unknown) => e), 'BUSBAR_NO_RESPONDERS'),
    ).toBe(true);
    const laterStream = `BUSBAR_${later.split('.')[0]}`;
    await jsm.streams.add({ name: laterStream, subjects: [`${later.split('.')[0]}.>`] });
    const acked = await b.request(later, 1, { timeoutMs: 5_000 }).catch((e: unknown) => e);
    expect(BusbarError.is(acked, 'BUSBAR_CONFIG')).toBe(true);
    expect((acked as Error).message).toContain(laterStream);
    // The bus still works.
    const fine = topic('fine');
    await b.respond(fine, (m) => m.payload);
    expect(await b.request(fine, 'ok', { timeoutMs: 5_000 })).toBe('ok');
  });

  it('the default prefix keeps requests out of the streams busbar creates for the same topics', async () => {
    const b = await bus();
    const name = topic('mixed');
    await b.publish(name, { event: true }); // creates the stream capturing the topic's first segment
    await b.respond(name, (m) => m.payload);
    expect(await b.request(name, 'req', { timeoutMs: 5_000 })).toBe('req');
    const jsm = await nc.jetstreamManager();
    expect((await jsm.streams.info(`BUSBAR_${name.split('.')[0]}`)).state.messages).toBe(1);
  });

  it("a reply over the server's max_payload fails the caller at once, not at its timeout", async () => {
    const b = await bus();
    const name = topic('huge');
    const max = nc.info?.max_payload ?? 1024 * 1024;
    await b.respond(name, (m) => (m.payload === 'big' ? 'x'.repeat(max) : 'small'));
    const t0 = Date.now();
    const failed = await b.request(name, 'big', { timeoutMs: 10_000 }).catch((e: unknown) => e);
    expect(BusbarError.is(failed, 'BUSBAR_REMOTE')).toBe(true);
    expect((failed as { remoteCode?: string }).remoteCode).toBe('BUSBAR_PAYLOAD_TOO_LARGE');
    expect(Date.now() - t0).toBeLessThan(5_000);
    expect(await b.request(name, 'ok', { timeoutMs: 5_000 })).toBe('small');
  });

  it('a bad requestPrefix is a ConfigError', async () => {
    const failed = await bus({ requestPrefix: 'no-dot' }).catch((e: unknown) => e);
    expect(BusbarError.is(failed, 'BUSBAR_CONFIG')).toBe(true);
  });
});

describe.runIf(ok)('nats request/reply leaves nothing behind', () => {
  let server: PrivateServer;
  let monitor: number;
  beforeAll(async () => {
    monitor = await freePort();
    server = await privateServer(`http: 127.0.0.1:${monitor}`);
  });
  afterAll(async () => {
    await server?.destroy();
  });

  /** The subscriptions of the connection named `name`, as the server sees them. */
  async function serverSubs(name: string): Promise<string[]> {
    const res = await fetch(`http://127.0.0.1:${monitor}/connz?subs=1`);
    const body = (await res.json()) as { connections?: { name?: string; subscriptions_list?: string[] }[] };
    return body.connections?.find((c) => c.name === name)?.subscriptions_list ?? [];
  }

  it('one reply subscription for any number of requests; no timer or request left once they settle', async () => {
    const name = uniqueName('rr-leak');
    const transport = driver.create({
      url: new URL(server.url),
      hosts: [`127.0.0.1:${server.port}`],
      options: natsOptions.parse({}),
      bus: { name, connectTimeoutMs: 5_000, publishTimeoutMs: 5_000, closeTimeoutMs: 5_000 },
      secrets: [],
      logger: silentLogger,
      reportState: () => {},
    });
    await transport.connect();
    const rr = transport.requestReply;
    if (!rr) throw new Error('no requestReply');
    const record = (topic: string, n: number) => ({
      topic,
      id: `${n}`,
      key: undefined,
      headers: {},
      body: json(n),
      contentType: 'application/json',
      timestamp: Date.now(),
    });
    await rr.respond(
      { topic: 'leak.fast', group: undefined, prefetch: 100 },
      {
        onRequest: (r) => void r.reply({ body: r.body, contentType: 'application/json', headers: {} }),
        onError: () => {},
      },
    );
    await rr.respond(
      { topic: 'leak.slow', group: 'g', prefetch: 100 },
      {
        onRequest: (r) =>
          // A second round may start after the check below and reply once the transport closed (ClosedError).
          void setTimeout(
            () => r.reply({ body: r.body, contentType: undefined, headers: {} }).catch(() => undefined),
            300,
          ),
        onError: () => {},
      },
    );
    // nats.js' own request mux (JetStream API calls) and the like: there before busbar's first request.
    const inboxes = async () => (await serverSubs(name)).filter((s) => s.startsWith('_INBOX.'));
    const inboxesBefore = await inboxes();
    const timers = () => process.getActiveResourcesInfo().filter((k) => k === 'Timeout').length;
    const before = timers();
    const outcomes = await Promise.all(
      Array.from({ length: 200 }, (_, n) => {
        const kind = n % 4;
        if (kind === 0) return rr.request(record('leak.fast', n), { timeoutMs: 5_000 }).then(() => 'reply');
        if (kind === 1) return rr.request(record('leak.slow', n), { timeoutMs: 50 }).catch((e: BusbarError) => e.code);
        if (kind === 2) {
          const controller = new AbortController();
          const p = rr.request(record('leak.slow', n), { timeoutMs: 5_000, signal: controller.signal });
          setTimeout(() => controller.abort(), 10);
          return p.catch((e: BusbarError) => e.code);
        }
        return rr.request(record('leak.none', n), { timeoutMs: 5_000 }).catch((e: BusbarError) => e.code);
      }),
    );
    expect(new Set(outcomes)).toEqual(new Set(['reply', 'BUSBAR_TIMEOUT', 'BUSBAR_ABORTED', 'BUSBAR_NO_RESPONDERS']));
    // The late replies of the timed-out and aborted requests arrive and are dropped.
    await new Promise((r) => setTimeout(r, 500));
    expect((rr as unknown as { pending: number }).pending).toBe(0);
    expect(timers()).toBeLessThanOrEqual(before);
    const subs = await serverSubs(name);
    const added = (await inboxes()).filter((s) => !inboxesBefore.includes(s));
    expect(added).toHaveLength(1); // busbar's one reply subscription, for all 200 requests
    expect(subs.filter((s) => s.startsWith('_busbar.rr.'))).toHaveLength(2);
    // close() rejects what still waits, and the responders are gone from the server.
    const waiting = rr.request(record('leak.slow', 1), { timeoutMs: 30_000 }).catch((e: BusbarError) => e.code);
    await transport.close();
    expect(await waiting).toBe('BUSBAR_CLOSED');
    await waitFor(async () => (await serverSubs(name)).length === 0, 5_000, 'the connection to go');
  });

  // Last in this block: it stops the private server.
  it('a connection closed for good fails waiting requests with ConnectionError, not at their timeout', async () => {
    const b = await connect({ url: server.url, driver, logger: silentLogger, maxReconnectAttempts: 0 });
    try {
      const slow = 'gone.slow';
      await b.respond(slow, () => new Promise(() => undefined), { handlerTimeoutMs: 60_000 });
      const waiting = b.request(slow, 1, { timeoutMs: 30_000 }).catch((e: unknown) => e);
      await new Promise((r) => setTimeout(r, 100));
      const t0 = Date.now();
      await server.stop();
      const error = await waiting;
      expect(BusbarError.is(error, 'BUSBAR_CONNECTION')).toBe(true);
      expect(Date.now() - t0).toBeLessThan(10_000);
    } finally {
      await b.close();
    }
  });
});
