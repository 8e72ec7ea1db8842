import { ClosedError, PublishError, TimeoutError } from '@busbar/core';
import { createInbox, type Msg, type NatsConnection, type Subscription } from 'nats';
import type { NativeRecord } from './codec.js';
import { publishRefusal } from './errors.js';

/** All records of one `publish()` call share one promise. */
interface Batch {
  remaining: number;
  done: boolean;
  resolve(): void;
  reject(error: Error): void;
}

interface Pending {
  readonly record: NativeRecord;
  readonly batch: Batch;
  readonly deadline: number;
  readonly topic: string;
}

const decoder = new TextDecoder();
/** `{"stream":` : every successful PubAck starts like this, so the hot path needs no JSON parse. */
const OK_PREFIX = [0x7b, 0x22, 0x73, 0x74, 0x72, 0x65, 0x61, 0x6d, 0x22];

function isOk(data: Uint8Array): boolean {
  if (data.length < OK_PREFIX.length) return false;
  for (let i = 0; i < OK_PREFIX.length; i++) if (data[i] !== OK_PREFIX[i]) return false;
  return true;
}

/**
 * Pipelined JetStream publishing: every record goes out with a reply subject
 * under one wildcard inbox subscription, and its PubAck settles it. Nothing is
 * allocated per message beyond the pending entry: no timer (one sweeper checks
 * deadlines), no promise per record of a batch. Records still unacknowledged
 * after a reconnect are sent again with the same `Nats-Msg-Id`, so the server
 * drops the copies it already has.
 */
export class Publisher {
  readonly #nc: NatsConnection;
  readonly #timeoutMs: number;
  readonly #prefix: string;
  readonly #sub: Subscription;
  readonly #pending = new Map<number, Pending>();
  readonly #onMissingStream: (topic: string) => void;
  #seq = 0;
  #closed = false;
  #sweeper: NodeJS.Timeout | undefined;
  #idle: (() => void) | undefined;

  constructor(nc: NatsConnection, timeoutMs: number, onMissingStream: (topic: string) => void) {
    this.#nc = nc;
    this.#timeoutMs = timeoutMs;
    this.#onMissingStream = onMissingStream;
    this.#prefix = `${createInbox()}.`;
    this.#sub = nc.subscribe(`${this.#prefix}*`, { callback: (_err, msg) => this.#onReply(msg) });
  }

  publish(records: readonly NativeRecord[], topic: string): Promise<void> {
    if (this.#nc.isClosed()) return Promise.reject(new ClosedError('The NATS connection is closed: publish rejected'));
    return new Promise<void>((resolve, reject) => {
      const batch: Batch = { remaining: records.length, done: false, resolve, reject };
      const deadline = Date.now() + this.#timeoutMs;
      for (const record of records) {
        const token = ++this.#seq;
        this.#pending.set(token, { record, batch, deadline, topic });
        try {
          this.#send(token, record);
        } catch (error) {
          // nats.js refuses some records itself (over max_payload, a bad header): this one fails the batch;
          // records already sent are settled by their PubAcks and ignored.
          this.#pending.delete(token);
          this.#settle(batch, this.#refusal(error, record, topic));
          break;
        }
      }
      this.#sweeper ??= setInterval(() => this.#sweep(), Math.max(50, Math.min(1_000, this.#timeoutMs / 4)));
    });
  }

  #send(token: number, record: NativeRecord): void {
    this.#nc.publish(record.subject, record.data, { reply: `${this.#prefix}${token}`, headers: record.headers });
  }

  #refusal(error: unknown, record: NativeRecord, topic: string): Error {
    const max = this.#nc.info?.max_payload ?? Number.NaN;
    return (
      publishRefusal(error, topic, record.size, max) ??
      new PublishError(`Publishing to '${topic}' failed: ${(error as Error)?.message ?? String(error)}`)
    );
  }

  #onReply(msg: Msg): void {
    const token = Number(msg.subject.slice(this.#prefix.length));
    const pending = this.#pending.get(token);
    if (!pending) return; // a late reply to a re-sent or timed-out record
    this.#pending.delete(token);
    this.#settle(pending.batch, isOk(msg.data) ? undefined : this.#failure(msg, pending.topic));
  }

  #failure(msg: Msg, topic: string): Error {
    if (msg.headers?.code === 503) {
      this.#onMissingStream(topic);
      return new PublishError(
        `No JetStream stream captures '${topic}' (it may have been deleted); retry to re-create it`,
      );
    }
    let text = decoder.decode(msg.data);
    try {
      const parsed = JSON.parse(text) as { error?: { description?: string; err_code?: number } };
      if (parsed.error) text = `${parsed.error.description ?? 'error'} (${parsed.error.err_code ?? '?'})`;
    } catch {
      // not JSON: keep the raw text
    }
    return new PublishError(`JetStream refused a message for '${topic}': ${text}`);
  }

  #settle(batch: Batch, error: Error | undefined): void {
    if (batch.done) return;
    if (error) {
      batch.done = true;
      batch.reject(error);
    } else if (--batch.remaining === 0) {
      batch.done = true;
      batch.resolve();
    }
    if (this.#pending.size === 0) this.#onIdle();
  }

  #sweep(): void {
    const now = Date.now();
    // Entries are in insertion order and share one timeout, so the expired ones come first.
    for (const [token, pending] of this.#pending) {
      if (pending.deadline > now) break;
      this.#pending.delete(token);
      this.#settle(
        pending.batch,
        new TimeoutError(
          `No PubAck for '${pending.topic}' within ${this.#timeoutMs} ms; the message may or may not be stored`,
        ),
      );
    }
    if (this.#pending.size === 0) this.#onIdle();
  }

  #onIdle(): void {
    if (this.#sweeper) {
      clearInterval(this.#sweeper);
      this.#sweeper = undefined;
    }
    this.#idle?.();
  }

  /** After a reconnect: anything sent before may be lost on the wire; the server drops what it already has. */
  resend(): void {
    for (const [token, pending] of this.#pending) {
      try {
        this.#send(token, pending.record);
      } catch (error) {
        // The server we reconnected to may have a smaller max_payload.
        this.#pending.delete(token);
        this.#settle(pending.batch, this.#refusal(error, pending.record, pending.topic));
      }
    }
  }

  get inFlight(): number {
    return this.#pending.size;
  }

  /** Waits (up to the publish timeout) for every PubAck still expected. */
  async flush(): Promise<void> {
    if (this.#pending.size === 0) return;
    await new Promise<void>((resolve) => {
      this.#idle = resolve;
    });
    this.#idle = undefined;
  }

  /**
   * The server refused a publish to `subject` (a permissions violation): it says so once per message, on the
   * connection, not on the reply subject, so no PubAck would ever come. Every record waiting for `subject` fails
   * now, with the caller's typed error, not at its timeout.
   */
  denied(subject: string, error: (topic: string) => Error): void {
    for (const [token, pending] of this.#pending) {
      if (pending.record.subject !== subject) continue;
      this.#pending.delete(token);
      this.#settle(pending.batch, error(pending.topic));
    }
  }

  /** Fails what is left (connection gone for good). */
  failAll(error: Error): void {
    for (const pending of this.#pending.values()) this.#settle(pending.batch, error);
    this.#pending.clear();
    this.#onIdle();
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    try {
      this.#sub.unsubscribe();
    } catch {
      // the connection is already closed
    }
    this.failAll(new ClosedError('The NATS connection closed before the PubAck arrived'));
  }
}
