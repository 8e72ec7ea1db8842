import { ConfigError, PayloadTooLargeError } from '@busbar/core';
import {
  HEADER,
  type IncomingRequest,
  numericHeader,
  type ReplyRecord,
  type RespondSpec,
  type TransportSubscription,
} from '@busbar/core/transport';
import { type Msg, type NatsConnection, headers as natsHeaders, type Subscription } from 'nats';
import { readCloudEvent } from './cloudevents.js';
import {
  CONTENT_TYPE,
  checkNatsHeaders,
  value as headerValue,
  idFrom,
  msgHeaders,
  usableId,
  validTime,
  wire,
} from './codec.js';
import { publishRefusal, toBusbarError } from './errors.js';
import { encodedHeaders } from './internals.js';
import { toSubject } from './names.js';

/** What request/reply needs from the transport. */
export interface RequestContext {
  /** The live connection; throws ClosedError when the transport is closed or not connected. */
  readonly nc: () => NatsConnection;
  readonly maxPayloadBytes: () => number;
  /** Prepended to a topic to make its request subject (`requestPrefix`). */
  readonly prefix: string;
  /** The JetStream stream capturing `subject`, if any (undefined when none, or when JetStream cannot say). */
  readonly capturedBy: (subject: string) => Promise<string | undefined>;
  /** Bounds waits on the server (flush after subscribing). */
  readonly waitMs: number;
  readonly secrets: readonly string[];
}

/**
 * The error a request on a subject captured by a stream gets: JetStream stores the request as a message (so
 * event consumers of that stream see it) and answers the reply inbox with a PubAck instead of the responder.
 */
export function capturedError(topic: string, subject: string, stream: string): ConfigError {
  return new ConfigError(
    `Requests on '${topic}' go to subject '${subject}', which JetStream stream '${stream}' captures: the stream ` +
      'would store every request and answer it with a PubAck. Use a request topic no stream captures, or the ' +
      '\'requestPrefix\' option (README, "Request/reply")',
  );
}

/** Content type and headers of a reply (or request) as NATS headers; undefined when there are none. */
export function replyHeaders(reply: ReplyRecord): string | undefined {
  checkNatsHeaders(reply.headers);
  let block: string | undefined;
  for (const name in reply.headers) {
    block ??= 'NATS/1.0\r\n';
    block += `${name}: ${(reply.headers[name] as string).trim()}\r\n`;
  }
  if (reply.contentType) {
    block ??= 'NATS/1.0\r\n';
    block += `${CONTENT_TYPE}: ${headerValue(reply.contentType)}\r\n`;
  }
  return block === undefined ? undefined : `${block}\r\n`;
}

/** One incoming core NATS message as a busbar request. */
function toRequest(nc: NatsConnection, msg: Msg, topic: string, ctx: RequestContext): IncomingRequest {
  const { secrets, maxPayloadBytes: max } = ctx;
  const headers: Record<string, string> = {};
  const msgId = msgHeaders(msg, headers);
  const contentType = wire.cloudEvent ? readCloudEvent(headers, wire.contentType) : wire.contentType;
  const now = Date.now();
  // Identity: busbar's own id (Nats-Msg-Id, as on published messages), else the reply inbox, which is unique
  // per request; a message without one (a plain publish) is served but nobody waits for the answer.
  const id =
    usableId(msgId === undefined ? undefined : idFrom(msgId, topic, headers[HEADER.redrive])) ??
    usableId(headers[HEADER.id]) ??
    msg.reply ??
    `${msg.subject}:${msg.sid}:${now}`;
  return {
    id,
    topic,
    headers,
    body: msg.data,
    contentType,
    timestamp: validTime(numericHeader(headers[HEADER.timestamp], now), now),
    raw: msg,
    reply: async (reply) => {
      const inbox = msg.reply;
      if (!inbox) return;
      const block = replyHeaders(reply);
      const size = (block === undefined ? 0 : Buffer.byteLength(block)) + reply.body.byteLength;
      const limit = max();
      if (size > limit) {
        // Tell the caller at once instead of letting it wait for its timeout, then report the failure.
        const failed = natsHeaders();
        failed.set(HEADER.replyError, 'BUSBAR_PAYLOAD_TOO_LARGE');
        failed.set(HEADER.replyErrorMessage, `The reply is ${size} bytes, over the server's max_payload of ${limit}`);
        try {
          nc.publish(inbox, new Uint8Array(0), { headers: failed });
        } catch {
          // The connection is gone: the caller times out; the failure below is what this reply reports.
        }
        throw new PayloadTooLargeError(size, limit, topic);
      }
      try {
        nc.publish(inbox, reply.body, block === undefined ? {} : { headers: encodedHeaders(block) });
      } catch (error) {
        throw (
          publishRefusal(error, topic, size, limit) ??
          toBusbarError(error, { what: `Replying on '${topic}' failed`, op: 'request', secrets })
        );
      }
    },
  };
}

/**
 * Serves requests on `spec.topic`: a core NATS subscription on its request subject, in queue group `group`
 * when there is one (the server hands each request to one member), so foreign requesters reach it too.
 */
export async function respond(
  ctx: RequestContext,
  spec: RespondSpec,
  callbacks: { readonly onRequest: (request: IncomingRequest) => void; readonly onError: (error: Error) => void },
  stopped: (sub: Subscription) => void,
): Promise<{ sub: Subscription; handle: TransportSubscription }> {
  const nc = ctx.nc();
  const subject = `${ctx.prefix}${toSubject(spec.topic)}`;
  const stream = await ctx.capturedBy(subject);
  if (stream !== undefined) throw capturedError(spec.topic, subject, stream);
  let active = true;
  const prefixLength = ctx.prefix.length;
  const sub = nc.subscribe(subject, {
    ...(spec.group === undefined ? {} : { queue: spec.group }),
    callback: (error, msg) => {
      if (!active) return;
      if (error) {
        callbacks.onError(
          toBusbarError(error, {
            what: `Serving requests on '${spec.topic}' failed`,
            op: 'request',
            secrets: ctx.secrets,
          }),
        );
        return;
      }
      callbacks.onRequest(toRequest(nc, msg, msg.subject.slice(prefixLength), ctx));
    },
  });
  // The server has the subscription once a PING after it is answered; bounded, as a disconnected client
  // sends it on reconnect anyway.
  await bounded(nc.flush(), ctx.waitMs);
  const stop = async () => {
    if (!active) return;
    active = false;
    stopped(sub);
    if (!sub.isClosed()) sub.unsubscribe();
  };
  return { sub, handle: { stop, close: stop } };
}

/** Waits for `promise` at most `ms`, ignoring its failure (the caller goes on either way). */
export async function bounded(promise: Promise<unknown>, ms: number): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  try {
    await Promise.race([
      promise.catch(() => undefined),
      new Promise<void>((resolve) => {
        timer = setTimeout(resolve, ms);
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}
