import { BusbarError, ClosedError, ConnectionError, PayloadTooLargeError } from '@busbar/core';
import {
  type Capabilities,
  type LagInfo,
  type OutgoingRecord,
  redactUrl,
  type SubscribeCallbacks,
  type SubscribeSpec,
  type Transport,
  type TransportContext,
  type TransportSubscription,
} from '@busbar/core/transport';
import {
  type ConnectionOptions,
  type JetStreamClient,
  type JetStreamManager,
  type NatsConnection,
  connect as natsConnect,
} from 'nats';
import { hedgeApi } from './api.js';
import { optionSecrets, security } from './auth.js';
import { CE_PREFIX } from './cloudevents.js';
import { checkHeaderSize, checkNatsHeaders, encode, type NativeRecord } from './codec.js';
import { type GroupContext, subscribeBroadcast, subscribeGroup } from './consumer.js';
import { toBusbarError } from './errors.js';
import { FAIL_FAST_DIAL, installFailFastDial } from './internals.js';
import { assertNatsTopic, consumerName } from './names.js';
import type { NatsOptions } from './options.js';
import { Publisher } from './publisher.js';
import { NatsRequests } from './requests.js';
import { RETRY_STREAM_KEY } from './retry.js';
import { Topology } from './topology.js';

const capabilities: Capabilities = {
  durableGroups: true,
  ordering: true,
  wildcards: true,
};

/** nats-server's default `max_payload`, used until the server's INFO says otherwise. */
const DEFAULT_MAX_PAYLOAD = 1024 * 1024;
/** `max_ack_pending` of a group declared before any member subscribed. */
const DECLARED_MAX_ACK_PENDING = 1_000;

/** `host:port` of every seed (`nats://a:4222,b:4223`, or `nats://a,b:4222` where hosts share the URL's port). */
export function serverList(context: TransportContext<NatsOptions>): string[] {
  const port = context.url.port || '4222';
  const seeds = (context.hosts.length > 0 ? context.hosts : [context.url.host]).flatMap((h) => h.split(','));
  const servers = seeds.filter(Boolean).map((h) => (/:\d+$/.test(h) && !h.endsWith(']') ? h : `${h}:${port}`));
  return [...(servers.length > 0 ? servers : [`127.0.0.1:${port}`]), ...context.options.servers];
}

/**
 * `nats://[user:pass@]host1,host2:port` plus the auth and TLS options -> the client's connection options.
 * Reading a `credsFile` adds the seeds it holds to `secrets`.
 */
export async function connectionOptions(
  context: TransportContext<NatsOptions>,
  secrets: string[] = [],
): Promise<ConnectionOptions> {
  const { url, options } = context;
  const user = url.username ? decodeURIComponent(url.username) : options.user;
  const pass = url.password ? decodeURIComponent(url.password) : options.pass;
  const { authenticator, tls } = await security(options, user, pass, secrets);
  return {
    servers: serverList(context),
    name: context.bus.name,
    ...(authenticator === undefined ? {} : { authenticator }),
    ...(tls === undefined ? {} : { tls }),
    timeout: context.bus.connectTimeoutMs,
    maxReconnectAttempts: options.maxReconnectAttempts,
    reconnectTimeWait: options.reconnectTimeWaitMs,
    pingInterval: 10_000,
    maxPingOut: 2,
    noAsyncTraces: true,
    // A server that hangs up while the client dials fails the dial with its cause at once (internals.ts).
    ...{ [FAIL_FAST_DIAL]: true },
  };
}

/** The NATS JetStream transport: topics are subjects in streams, groups are durable pull consumers. */
export class NatsTransport implements Transport {
  readonly capabilities = capabilities;
  /** The CloudEvents NATS binding's binary-mode header prefix (see cloudevents.ts for its value encoding). */
  readonly cloudEventsPrefix = CE_PREFIX;
  readonly #context: TransportContext<NatsOptions>;
  readonly #options: NatsOptions;
  /** The context's secrets plus those only the driver sees (TLS key, creds seeds). */
  readonly #secrets: string[];
  #nc: NatsConnection | undefined;
  #js: JetStreamClient | undefined;
  #topology: Topology | undefined;
  #publisher: Publisher | undefined;
  #jsm: JetStreamManager | undefined;
  /** NATS core request/reply (README, "Request/reply"). */
  readonly requestReply: NatsRequests;
  #connected = false;
  #closed = false;

  constructor(context: TransportContext<NatsOptions>) {
    this.#context = context;
    this.#options = context.options;
    this.#secrets = [...context.secrets, ...optionSecrets(context.options)];
    this.requestReply = new NatsRequests({
      nc: () => this.#ready().nc,
      maxPayloadBytes: () => this.maxPayloadBytes,
      prefix: context.options.requestPrefix,
      capturedBy: (subject) => this.#capturedBy(subject),
      waitMs: context.bus.publishTimeoutMs,
      secrets: this.#secrets,
    });
  }

  /** The stream capturing `subject`; undefined when none does or JetStream does not answer in time. */
  async #capturedBy(subject: string): Promise<string | undefined> {
    const jsm = this.#jsm;
    if (!jsm) return undefined;
    try {
      return await jsm.streams.find(subject);
    } catch {
      // "no stream matches subject", or no answer: the PubAck check on replies still catches a captured request.
      return undefined;
    }
  }

  /** The server's `max_payload` (headers + body) once connected. */
  get maxPayloadBytes(): number {
    return this.#nc?.info?.max_payload ?? DEFAULT_MAX_PAYLOAD;
  }

  validateTopic(topic: string, use: 'publish' | 'subscribe'): void {
    assertNatsTopic(topic, use, this.#options);
  }

  async connect(): Promise<void> {
    const ctx = this.#context;
    // One budget for the dial and the JetStream check together: each had the whole connect timeout.
    const deadline = Date.now() + ctx.bus.connectTimeoutMs;
    ctx.reportState('nats', 'connecting');
    let nc: NatsConnection;
    try {
      installFailFastDial();
      nc = await natsConnect(await connectionOptions(ctx, this.#secrets));
    } catch (error) {
      if (BusbarError.is(error, 'BUSBAR_CONFIG')) {
        ctx.reportState('nats', 'down', error);
        throw error;
      }
      const what = `Could not connect to ${redactUrl(ctx.url)}`;
      const failure = toBusbarError(error, { what, op: 'connect', secrets: this.#secrets });
      ctx.reportState('nats', 'down', failure);
      if (failure instanceof ConnectionError) throw failure;
      // nats.js says only TIMEOUT; a NATS server greets every client at once, so say what silence can mean.
      const silent =
        (error as { code?: unknown } | null)?.code === 'TIMEOUT'
          ? `${what}: no NATS INFO within ${ctx.bus.connectTimeoutMs} ms (TIMEOUT): a server that is overloaded or unreachable, or a port of another protocol or a TLS port, where nothing speaks first`
          : failure.message;
      throw new ConnectionError(silent, { cause: failure });
    }
    this.#nc = nc;
    this.#connected = true;
    try {
      // A declaration may take as long as connecting may (a cluster's leader election takes seconds, nats.js'
      // default API timeout is 5 s); an answer lost in a reconnect is asked for again, not waited out (api.ts).
      const timeout = ctx.bus.connectTimeoutMs;
      const left = Math.max(1, deadline - Date.now());
      const jsm = await hedgeApi(left, () => nc.jetstreamManager({ timeout: left }));
      this.#jsm = jsm;
      this.#js = nc.jetstream({ timeout });
      this.#topology = new Topology(jsm, this.#options, timeout);
    } catch (error) {
      await nc.close().catch(() => undefined);
      throw toBusbarError(error, {
        what: `JetStream is not available at ${redactUrl(ctx.url)}`,
        op: 'connect',
        secrets: this.#secrets,
      });
    }
    const topology = this.#topology;
    this.#publisher = new Publisher(nc, ctx.bus.publishTimeoutMs, (topic) => topology.forget(topic));
    ctx.reportState('nats', 'up');
    void this.#watch(nc);
  }

  async #watch(nc: NatsConnection): Promise<void> {
    const ctx = this.#context;
    void nc.closed().then((error) => {
      this.#connected = false;
      this.#publisher?.failAll(new ConnectionError('The NATS connection closed'));
      this.requestReply.connectionLost(new ConnectionError('The NATS connection closed'));
      if (!this.#closed)
        ctx.reportState(
          'nats',
          'down',
          error
            ? toBusbarError(error, { what: 'NATS connection lost', op: 'consume', secrets: this.#secrets })
            : undefined,
        );
    });
    for await (const status of nc.status()) {
      if (status.type === 'error' && status.permissionContext?.operation === 'publish') {
        this.#denied(status.permissionContext.subject);
      } else if (status.type === 'disconnect') {
        this.#connected = false;
        if (!this.#closed) ctx.reportState('nats', 'reconnecting');
      } else if (status.type === 'reconnect') {
        this.#connected = true;
        this.#publisher?.resend();
        ctx.reportState('nats', 'up');
      }
    }
  }

  /** A publish the user's permissions forbid: the waiting records and requests fail typed (README, "Errors"). */
  #denied(subject: string): void {
    const native = Object.assign(new Error(`Permissions Violation for Publish to "${subject}"`), {
      code: 'PERMISSIONS_VIOLATION',
    });
    const error = (what: string) => toBusbarError(native, { what, op: 'publish', secrets: this.#secrets });
    this.#publisher?.denied(subject, (topic) => error(`Publishing to '${topic}' failed`));
    this.requestReply.denied(subject, (topic) => error(`Request on '${topic}' failed`));
  }

  #ready(): { nc: NatsConnection; js: JetStreamClient; topology: Topology; publisher: Publisher } {
    if (this.#closed || !this.#nc || !this.#js || !this.#topology || !this.#publisher) {
      throw new ClosedError('The NATS transport is not connected');
    }
    return { nc: this.#nc, js: this.#js, topology: this.#topology, publisher: this.#publisher };
  }

  /** Not async: a publish to a known stream goes straight to the publisher's promise (one promise less per call). */
  publish(records: readonly OutgoingRecord[]): Promise<void> {
    try {
      return this.#publish(records);
    } catch (error) {
      // Refused before sending (closed, too large, a bad header): a rejection, as from any publish.
      return Promise.reject(error);
    }
  }

  #publish(records: readonly OutgoingRecord[]): Promise<void> {
    const { topology, publisher } = this.#ready();
    const first = records[0];
    if (!first) return Promise.resolve();
    const now = Date.now();
    const max = this.maxPayloadBytes;
    const native: NativeRecord[] = new Array(records.length);
    let sameTopic = true;
    for (let i = 0; i < records.length; i++) {
      const record = records[i] as OutgoingRecord;
      checkNatsHeaders(record.headers);
      const n = encode(record, now);
      if (n.size > max) throw new PayloadTooLargeError(n.size, max, record.topic);
      checkHeaderSize(n, record.topic);
      native[i] = n;
      if (record.topic !== first.topic) sameTopic = false;
    }
    if (sameTopic && topology.known(first.topic) !== undefined) return publisher.publish(native, first.topic);
    return this.#ensureStreams(topology, sameTopic ? [first.topic] : [...new Set(records.map((r) => r.topic))]).then(
      () => publisher.publish(native, first.topic),
    );
  }

  async #ensureStreams(topology: Topology, topics: readonly string[]): Promise<void> {
    try {
      for (const topic of topics) await topology.ensureStream(topic);
    } catch (error) {
      throw toBusbarError(error, {
        what: `Creating the stream for '${topics[0]}' failed`,
        op: 'declare',
        secrets: this.#secrets,
      });
    }
  }

  #consumerContext(): GroupContext {
    const { nc, js, topology, publisher } = this.#ready();
    return {
      js,
      topology,
      flush: () => nc.flush(),
      publishCopy: (record) => {
        const max = this.maxPayloadBytes;
        if (record.size > max) {
          return Promise.reject(new PayloadTooLargeError(record.size, max, RETRY_STREAM_KEY));
        }
        try {
          checkHeaderSize(record, RETRY_STREAM_KEY);
        } catch (error) {
          return Promise.reject(error);
        }
        return publisher.publish([record], RETRY_STREAM_KEY);
      },
      logger: this.#context.logger,
      ackWaitMs: this.#options.ackWaitMs,
      pullExpiresMs: this.#options.pullExpiresMs,
      connected: () => this.#connected,
    };
  }

  async subscribe(spec: SubscribeSpec, callbacks: SubscribeCallbacks): Promise<TransportSubscription> {
    const ctx = this.#consumerContext();
    try {
      return spec.group === undefined
        ? await subscribeBroadcast(ctx, spec, callbacks)
        : await subscribeGroup(ctx, spec, callbacks);
    } catch (error) {
      throw toBusbarError(error, {
        what: `Subscribing to '${spec.topic}' failed`,
        op: 'consume',
        secrets: this.#secrets,
      });
    }
  }

  async declareGroup(topic: string, group: string): Promise<void> {
    const { topology } = this.#ready();
    try {
      const stream = await topology.ensureStream(topic);
      const { filter } = topology.filterFor(topic, stream);
      await topology.ensureConsumer(stream, consumerName(topic, group), filter, {
        ackWaitMs: this.#options.ackWaitMs,
        maxAckPending: DECLARED_MAX_ACK_PENDING,
        update: false,
      });
    } catch (error) {
      throw toBusbarError(error, {
        what: `Declaring group '${group}' on '${topic}' failed`,
        op: 'declare',
        secrets: this.#secrets,
      });
    }
  }

  /** JetStream's own counters: num_pending (lag), num_ack_pending (pending), the topic's messages in its stream (backlog). */
  async lag(topic: string, group: string): Promise<LagInfo | undefined> {
    const { topology } = this.#ready();
    try {
      return await topology.lag(topic, consumerName(topic, group));
    } catch (error) {
      throw toBusbarError(error, {
        what: `Reading the lag of group '${group}' on '${topic}' failed`,
        op: 'declare',
        secrets: this.#secrets,
      });
    }
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.requestReply.close();
    const nc = this.#nc;
    if (!nc) return;
    const bound = this.#context.bus.publishTimeoutMs;
    try {
      // While the server is unreachable there is nothing to flush or drain: waiting would only hold close(),
      // and the client would go on reconnecting behind it.
      if (this.#connected) {
        await withBound(this.#publisher?.flush() ?? Promise.resolve(), bound);
        this.#publisher?.close();
        await withBound(nc.drain(), bound);
      }
    } catch (error) {
      if (!String((error as Error)?.message).includes('closed')) {
        throw toBusbarError(error, {
          what: 'Closing the NATS connection failed',
          op: 'close',
          secrets: this.#secrets,
        });
      }
    } finally {
      this.#publisher?.close();
      if (!nc.isClosed()) await nc.close().catch(() => undefined);
      this.#context.reportState('nats', 'down');
    }
  }
}

/** Waits for `promise` at most `ms` (then goes on; the caller closes what is left). */
async function withBound(promise: Promise<unknown>, ms: number): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  const bound = new Promise<void>((resolve) => {
    timer = setTimeout(resolve, ms);
  });
  try {
    await Promise.race([promise, bound]);
  } finally {
    clearTimeout(timer);
  }
}
