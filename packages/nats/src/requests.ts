import { AbortedError, type BusbarError, ClosedError, NoRespondersError, PayloadTooLargeError } from '@busbar/core';
import type {
  IncomingRequest,
  OutgoingRecord,
  ReplyRecord,
  RequestReply,
  RespondSpec,
  TransportSubscription,
} from '@busbar/core/transport';
import { PendingReplies } from '@busbar/core/transport';
import { createInbox, type Msg, type Subscription } from 'nats';
import { checkNatsHeaders, encode, headersFromNats, parseHeaderBlock, wire } from './codec.js';
import { publishRefusal, toBusbarError } from './errors.js';
import { msgHeaderBlock } from './internals.js';
import { capturedError, type RequestContext, respond } from './responders.js';

/** How long a subject's "no stream captures it" answer is trusted before asking JetStream again. */
const CAPTURE_CHECK_TTL_MS = 30_000;
/** Subjects whose capture check is remembered (a bound: topics may be unbounded). */
const CAPTURE_CHECK_MAX = 10_000;

/** One subject's "which stream captures it" answer, readable synchronously once known. */
interface CaptureCheck {
  readonly at: number;
  readonly promise: Promise<string | undefined>;
  done: boolean;
  stream: string | undefined;
}

interface Pending {
  readonly topic: string;
  readonly subject: string;
}

/**
 * Request/reply over NATS core request/reply: a request is a core message on its subject with a reply
 * subject; replies come back on ONE muxed inbox subscription per transport (`_INBOX.<nuid>.*`, like nats.js'
 * own `nc.request`), correlated by the last token. Requests are not JetStream messages (see README).
 */
export class NatsRequests implements RequestReply {
  readonly #ctx: RequestContext;
  readonly #pending = new PendingReplies<Pending>('NATS');
  readonly #responders = new Set<Subscription>();
  readonly #captureChecks = new Map<string, CaptureCheck>();
  #inbox: { prefix: string; sub: Subscription } | undefined;
  #next = 0;
  #closed = false;

  constructor(ctx: RequestContext) {
    this.#ctx = ctx;
  }

  /** Requests waiting for a reply (tests check that nothing is left behind). */
  lateReplies(): number {
    return this.#pending.late;
  }

  get pending(): number {
    return this.#pending.size;
  }

  request(record: OutgoingRecord, options: { timeoutMs: number; signal?: AbortSignal }): Promise<ReplyRecord> {
    const signal = options.signal;
    const topic = record.topic;
    if (signal?.aborted)
      return Promise.reject(new AbortedError(`Request on '${topic}' aborted`, { cause: signal.reason }));
    if (this.#closed) return Promise.reject(new ClosedError('The NATS transport is closed: request rejected'));
    const subject = `${this.#ctx.prefix}${topic}`;
    let native: ReturnType<typeof encode>;
    let inbox: { prefix: string; sub: Subscription };
    try {
      checkNatsHeaders(record.headers);
      native = encode(record, Date.now());
      const max = this.#ctx.maxPayloadBytes();
      if (native.size > max) throw new PayloadTooLargeError(native.size, max, topic);
      inbox = this.#ensureInbox();
    } catch (error) {
      return Promise.reject(error);
    }
    const token = (this.#next++).toString(36);
    return this.#pending.open(token, topic, options, { topic, subject }, () => {
      const check = this.#capturedBy(subject);
      // Known already (the usual case): sent at once, so a request aborted right after the call still went out.
      if (check.done) return this.#send(token, subject, topic, native, inbox.prefix, check.stream);
      return check.promise.then((stream) => {
        // Timed out, aborted or closed meanwhile: nothing is sent.
        if (this.#pending.meta(token) !== undefined) this.#send(token, subject, topic, native, inbox.prefix, stream);
      });
    });
  }

  #send(
    token: string,
    subject: string,
    topic: string,
    native: ReturnType<typeof encode>,
    inboxPrefix: string,
    stream: string | undefined,
  ): void {
    if (stream !== undefined) throw capturedError(topic, subject, stream);
    const nc = this.#ctx.nc();
    try {
      nc.publish(subject, native.data, { headers: native.headers, reply: `${inboxPrefix}${token}` });
    } catch (error) {
      throw (
        publishRefusal(error, topic, native.size, this.#ctx.maxPayloadBytes()) ??
        toBusbarError(error, {
          what: `Sending the request on '${topic}' failed`,
          op: 'request',
          secrets: this.#ctx.secrets,
        })
      );
    }
  }

  /** Whether a stream captures `subject`, asked once per subject and TTL (the PubAck check on replies backs it up). */
  #capturedBy(subject: string): CaptureCheck {
    const now = Date.now();
    const known = this.#captureChecks.get(subject);
    if (known && now - known.at < CAPTURE_CHECK_TTL_MS) return known;
    if (this.#captureChecks.size >= CAPTURE_CHECK_MAX) this.#captureChecks.clear();
    // A refresh keeps the last answer usable meanwhile, so requests do not wait for it every TTL.
    const stale = known?.done === true;
    const check: CaptureCheck = {
      at: now,
      done: stale,
      stream: known?.stream,
      promise: this.#ctx.capturedBy(subject).then((stream) => {
        check.done = true;
        check.stream = stream;
        return stream;
      }),
    };
    this.#captureChecks.set(subject, check);
    return check;
  }

  /** The transport's one reply subscription, created on first use (and again after it failed). */
  #ensureInbox(): { prefix: string; sub: Subscription } {
    if (this.#inbox && !this.#inbox.sub.isClosed()) return this.#inbox;
    const nc = this.#ctx.nc();
    const prefix = `${createInbox()}.`;
    const sub = nc.subscribe(`${prefix}*`, {
      callback: (error, msg) => {
        if (error) {
          // A permissions violation on the inbox, say: every waiting request fails, the next one subscribes anew.
          if (this.#inbox?.sub === sub) this.#inbox = undefined;
          this.#failAll(
            toBusbarError(error, { what: 'The reply subscription failed', op: 'request', secrets: this.#ctx.secrets }),
          );
          return;
        }
        this.#onReply(msg, prefix);
      },
    });
    this.#inbox = { prefix, sub };
    return this.#inbox;
  }

  #onReply(msg: Msg, prefix: string): void {
    const token = msg.subject.slice(prefix.length);
    const pending = this.#pending.meta(token);
    if (!pending) {
      this.#pending.dropLate(); // late, or not ours
      return;
    }
    if (msg.data.length === 0 && msg.headers?.code === 503) {
      this.#pending.reject(token, new NoRespondersError(pending.topic));
      return;
    }
    const headers: Record<string, string> = {};
    // '' (no header block) is what a PubAck has; undefined (another client shape) falls back to nats.js' headers.
    const block = msgHeaderBlock(msg);
    const stream = (block === undefined ? msg.headers === undefined : block === '')
      ? pubAckStream(msg.data)
      : undefined;
    if (stream !== undefined) {
      this.#pending.reject(token, capturedError(pending.topic, pending.subject, stream));
      return;
    }
    if (block === undefined) headersFromNats(msg, headers);
    else parseHeaderBlock(block, headers);
    this.#pending.resolve(token, { body: msg.data, contentType: wire.contentType, headers });
  }

  respond(
    spec: RespondSpec,
    callbacks: { readonly onRequest: (request: IncomingRequest) => void; readonly onError: (error: Error) => void },
  ): Promise<TransportSubscription> {
    if (this.#closed) return Promise.reject(new ClosedError('The NATS transport is closed: respond rejected'));
    return respond(this.#ctx, spec, callbacks, (sub) => this.#responders.delete(sub)).then(({ sub, handle }) => {
      if (this.#closed) {
        void handle.stop();
        throw new ClosedError('The NATS transport closed while the responder started');
      }
      this.#responders.add(sub);
      return handle;
    });
  }

  #failAll(error: BusbarError | Error): void {
    this.#pending.rejectAll(error);
  }

  /** The connection is gone for good: waiting requests fail now instead of at their timeout. */
  /** The server refused a request on `subject` (permissions): its waiting requests fail now, not at their timeout. */
  denied(subject: string, error: (topic: string) => Error): void {
    this.#pending.rejectAll(error, (meta) => meta.subject === subject);
  }

  connectionLost(error: Error): void {
    this.#inbox = undefined;
    this.#failAll(error);
  }

  /** Pending requests reject with ClosedError; responders and the reply subscription stop. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#pending.close();
    for (const sub of this.#responders) if (!sub.isClosed()) sub.unsubscribe();
    this.#responders.clear();
    if (this.#inbox && !this.#inbox.sub.isClosed()) this.#inbox.sub.unsubscribe();
    this.#inbox = undefined;
    this.#captureChecks.clear();
  }
}

/**
 * The stream named by a JetStream PubAck (`{"stream":"X","seq":1}`, or its error form with `"error"`): what
 * the server answers instead of a responder when a stream captured the request's subject. Undefined for
 * anything else; a foreign responder's reply carrying exactly that shape without headers would be taken for one.
 */
export function pubAckStream(data: Uint8Array): string | undefined {
  if (data.length < 12 || data.length > 4_096 || data[0] !== 0x7b) return undefined;
  let parsed: unknown;
  try {
    parsed = JSON.parse(Buffer.from(data.buffer, data.byteOffset, data.byteLength).toString('utf8'));
  } catch {
    return undefined;
  }
  if (typeof parsed !== 'object' || parsed === null) return undefined;
  const ack = parsed as { stream?: unknown; seq?: unknown; error?: unknown };
  if (typeof ack.stream !== 'string') return undefined;
  return typeof ack.seq === 'number' || (typeof ack.error === 'object' && ack.error !== null) ? ack.stream : undefined;
}
