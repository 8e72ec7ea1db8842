import { createHash, randomUUID } from 'node:crypto';
import { ClosedError, ConnectionError, PublishError } from '@busbar/core';
import type {
  IncomingRequest,
  OutgoingRecord,
  ReplyRecord,
  RequestReply,
  RespondSpec,
  TransportContext,
  TransportSubscription,
} from '@busbar/core/transport';
import { PendingReplies } from '@busbar/core/transport';
import type { IPublishPacket } from 'mqtt';
import { ManualAcks } from './acks.js';
import { decodeFields, headerProperties, headersOf, userProperties } from './codec.js';
import { subscribeFilter } from './consumer.js';
import { toBusbarError } from './errors.js';
import { Link } from './link.js';
import type { MqttOptions } from './options.js';
import type { Publisher } from './publisher.js';
import { RecentKeys } from './recent.js';
import { TopicMap } from './topics.js';

type Callbacks = { readonly onRequest: (request: IncomingRequest) => void; readonly onError: (error: Error) => void };

/** How long the broker keeps a requester's reply session (and queues its replies) while it is disconnected. */
const REPLY_SESSION_SECONDS = 300;

/** Requests a responder remembers having served (the last 10,000 at least), so a duplicate PUBLISH of one is not answered twice. */
/** Longer keys are remembered by their digest (see seenKey). */
const SEEN_KEY_MAX = 256;
const SEEN_LIMIT = 10_000;

/** A response topic busbar may publish to: a topic name (no wildcard), not empty, not `$`-reserved. */
function replyPathProblem(path: string): string | undefined {
  if (path === '') return 'is empty';
  if (path.includes('+') || path.includes('#')) return "contains a wildcard ('+' or '#')";
  if (path.startsWith('$')) return "starts with '$' (reserved by MQTT)";
  return undefined;
}

function bodyOf(packet: IPublishPacket): Buffer {
  return typeof packet.payload === 'string' ? Buffer.from(packet.payload) : packet.payload;
}

/**
 * Request/reply over MQTT 5's own mechanism: a request is a QoS 1 PUBLISH to the topic's MQTT topic carrying a
 * Response Topic and Correlation Data; the responder publishes its reply to that Response Topic with the same
 * Correlation Data. A requester subscribes ONE response topic per transport (`<prefix>busbar-reply/<uuid>`, on
 * a connection of its own, created by the first request) and matches replies by correlation data.
 *
 * Responders are clean sessions (no session expiry): nothing queues requests for a responder that is away (its
 * caller times out instead, which it would do anyway before a late reply). A responder PUBACKs a request once
 * it is answered and holds at most its prefetch unanswered: beyond that it stops reading its connection, so a
 * flood waits on the broker (which queues up to its own limit, Mosquitto's `max_queued_messages`) instead of
 * in this process. Grouped responders share a `$share/<group>/<topic>` subscription, like the driver's groups.
 */
export class MqttRequestReply implements RequestReply {
  readonly #ctx: TransportContext<MqttOptions>;
  readonly #map: TopicMap;
  readonly #publisher: Publisher;
  readonly #base: string;
  /** Correlation data (latin1) -> what settles the request. */
  readonly #pending = new PendingReplies('MQTT');
  readonly #responders = new Set<() => Promise<void>>();
  readonly #replyId: string;
  readonly #replyPath: string;
  #replyLink: Link | undefined;
  #ready: Promise<void> | undefined;
  /** The reply subscription is in place: requests go out at once. */
  #subscribed = false;
  #closed = false;

  constructor(ctx: TransportContext<MqttOptions>, map: TopicMap, publisher: Publisher, base: string) {
    this.#ctx = ctx;
    this.#map = map;
    this.#publisher = publisher;
    this.#base = base;
    this.#replyId = randomUUID();
    this.#replyPath = `${map.replyHead}${this.#replyId}`;
  }

  /** The response topic of this transport's requests. */
  get replyPath(): string {
    return this.#replyPath;
  }

  /** Requests waiting for a reply (for tests: nothing may stay behind once they settle). */
  lateReplies(): number {
    return this.#pending.late;
  }

  get pendingCount(): number {
    return this.#pending.size;
  }

  /**
   * Connects the reply session and subscribes the response topic, once (again after a failure). A session of
   * its own, persistent for a few minutes: across a reconnect the broker keeps the subscription and queues the
   * replies that arrive meanwhile (mqtt.js re-sends unconfirmed requests before it reports the reconnect, so
   * a clean session re-subscribing then would miss their replies).
   */
  #subscribeReplies(): Promise<void> {
    if (this.#ready) return this.#ready;
    const link = new Link(this.#ctx, {
      clientId: `${this.#base}:reply:${this.#replyId}`,
      clean: false,
      sessionExpirySeconds: REPLY_SESSION_SECONDS,
      endSessionOnClose: true,
      receiveMaximum: 1_000,
      name: 'replies',
    });
    this.#replyLink = link;
    link.client.on('message', (topic: string, _payload: Buffer, packet: IPublishPacket) => {
      if (topic !== this.#replyPath) return;
      const correlation = packet.properties?.correlationData;
      if (correlation === undefined) return;
      // A late or unknown reply finds nothing here and is dropped.
      this.#pending.resolve(correlation.toString('latin1'), {
        body: bodyOf(packet),
        contentType: packet.properties?.contentType,
        headers: headersOf(packet),
      });
    });
    const ms = this.#ctx.bus.connectTimeoutMs;
    let timer: NodeJS.Timeout | undefined;
    const subscribed = link.connect().then(() =>
      Promise.race([
        subscribeFilter(link, this.#replyPath, (error) =>
          this.#ctx.logger.error('The MQTT reply subscription failed', { error }),
        ),
        new Promise<never>((_resolve, reject) => {
          timer = setTimeout(
            () => reject(new ConnectionError(`Subscribing the MQTT reply topic took over ${ms} ms`)),
            ms,
          );
        }),
      ]).finally(() => clearTimeout(timer)),
    );
    this.#ready = subscribed.then(
      () => {
        this.#subscribed = true;
      },
      async (error: unknown) => {
        // The next request tries again, on a new connection.
        if (this.#replyLink === link) {
          this.#replyLink = undefined;
          this.#ready = undefined;
        }
        await link.close(false).catch(() => undefined);
        throw error;
      },
    );
    return this.#ready;
  }

  request(record: OutgoingRecord, options: { timeoutMs: number; signal?: AbortSignal }): Promise<ReplyRecord> {
    if (this.#closed) return Promise.reject(new ClosedError('The MQTT transport is closed'));
    const correlation = this.#pending.nextId();
    // MQTT cannot tell that nobody serves the topic: no responder is a timeout. Once handed over, the request is
    // sent even if its caller stops waiting first (abort, timeout): the caller cannot tell how far it got
    // anyway, and a responder may act on it.
    return this.#pending.open(
      correlation,
      record.topic,
      options,
      undefined,
      () => {
        const send = () => this.#send(record, correlation, options.timeoutMs);
        return this.#subscribed ? send() : this.#subscribeReplies().then(send);
      },
      (error) =>
        toBusbarError(error, { what: `Request on '${record.topic}'`, op: 'request', secrets: this.#ctx.secrets }),
    );
  }

  #send(record: OutgoingRecord, correlation: string, timeoutMs: number): Promise<void> {
    if (this.#closed) return Promise.reject(new ClosedError('The MQTT transport is closed'));
    return this.#publisher.publishRaw(
      this.#publisher.settings(record.topic).path,
      record.body,
      userProperties(record),
      record.contentType,
      {
        responseTopic: this.#replyPath,
        correlationData: Buffer.from(correlation, 'latin1'),
        // The broker drops a request nobody took before its caller stops waiting (an offline durable group
        // session subscribed to the same topic would otherwise get it much later).
        messageExpiryInterval: Math.max(1, Math.ceil(timeoutMs / 1_000)),
      },
    );
  }

  async respond(spec: RespondSpec, callbacks: Callbacks): Promise<TransportSubscription> {
    if (this.#closed) throw new ClosedError('The MQTT transport is closed');
    const { group } = spec;
    const limit = Math.max(1, Math.min(65_535, spec.prefetch));
    const link = new Link(this.#ctx, {
      clientId: `${this.#base}:rr:${randomUUID()}`,
      clean: true,
      // Flow control: at most `limit` QoS 1 requests should reach us unacknowledged, each PUBACKed once
      // answered, so a flood waits on the broker (up to its own queue limit), not here; ManualAcks enforces it.
      receiveMaximum: limit,
      name: `responder ${spec.topic}${group ? ` (${group})` : ''}`,
    });
    const seen = new RecentKeys(SEEN_LIMIT);
    let warnedNoTopic = false;
    const acks: ManualAcks = new ManualAcks(
      link,
      (packet, inbound) => {
        const path = packet.topic;
        const skip = () => void acks.ack(inbound);
        if (path.startsWith(this.#map.retryHead) || path.startsWith(this.#map.replyHead)) return skip();
        const responseTopic = packet.properties?.responseTopic;
        if (responseTopic === undefined) {
          if (!warnedNoTopic) {
            warnedNoTopic = true;
            this.#ctx.logger.warn(`A message on '${path}' without a Response Topic reached a responder: ignored`);
          }
          return skip();
        }
        const correlation = packet.properties?.correlationData;
        if (correlation !== undefined) {
          // A requester's QoS 1 re-send after a lost PUBACK: the first copy is being (or was) answered.
          if (!seen.add(seenKey(responseTopic, correlation))) return skip();
        }
        callbacks.onRequest(this.#incoming(path, packet, responseTopic, correlation, () => void acks.ack(inbound)));
      },
      // Mosquitto 2.0 does not always keep to our Receive Maximum once PUBACKs flow (measured: 2,000 in flight
      // against 100), and QoS 0 requests have none: with `limit` requests in hand, stop reading the socket.
      limit,
    );
    try {
      await link.connect();
      const filter = this.#map.toPath(spec.topic);
      await subscribeFilter(link, group === undefined ? filter : TopicMap.shared(group, filter), callbacks.onError);
    } catch (error) {
      acks.stop();
      await link.close(false).catch(() => undefined);
      throw error;
    }
    const close = async () => {
      acks.stop();
      this.#responders.delete(close);
      await link.close(false);
    };
    this.#responders.add(close);
    // Replies go out on the publisher's connection, so ending this one at stop() loses nothing (requests
    // already handed to core are still answered), and a stopped member of a group takes no more requests.
    return { stop: close, close };
  }

  #incoming(
    path: string,
    packet: IPublishPacket,
    responseTopic: string,
    correlation: Buffer | undefined,
    answered: () => void,
  ): IncomingRequest {
    const headers = headersOf(packet);
    const fields = decodeFields(headers, packet);
    return {
      id: fields.id,
      topic: this.#map.fromPath(path) ?? path,
      headers,
      body: fields.body,
      contentType: packet.properties?.contentType,
      timestamp: fields.timestamp,
      raw: packet,
      // Not async: the publish's own promise and one reaction (an async frame and its await were two more).
      reply: (reply) => {
        let sent: Promise<void>;
        try {
          const problem = replyPathProblem(responseTopic);
          if (problem) throw new PublishError(`Cannot reply: the response topic ${problem}`, { retryable: false });
          sent = this.#publisher.publishRaw(
            responseTopic,
            reply.body,
            headerProperties(reply.headers),
            reply.contentType,
            correlation === undefined ? {} : { correlationData: Buffer.from(correlation) },
          );
        } catch (error) {
          answered();
          return Promise.reject(error);
        }
        // Answered (or the answer failed, which a redelivery would not fix): the request leaves our hands.
        return sent.finally(answered);
      },
    };
  }

  /** Rejects every pending request (ClosedError) and ends every responder. */
  async close(): Promise<void> {
    this.#closed = true;
    this.#pending.close();
    await Promise.all([
      ...[...this.#responders].map((close) => close().catch(() => undefined)),
      // Graceful: the DISCONNECT ends the reply session on the broker instead of leaving it to expire.
      this.#replyLink?.close(true, 1_000).catch(() => undefined),
    ]);
  }
}

/**
 * What a responder remembers of a request to spot a requester's QoS 1 re-send: the response topic and the
 * correlation data, or a digest of them when they are long (a foreign requester may send 64 KB of each, and
 * 10,000 of them are kept).
 */
export function seenKey(responseTopic: string, correlation: Buffer): string {
  if (responseTopic.length + correlation.length <= SEEN_KEY_MAX) {
    return `${responseTopic}\u0000${correlation.toString('latin1')}`;
  }
  return createHash('sha256').update(responseTopic).update('\u0000').update(correlation).digest('base64');
}
