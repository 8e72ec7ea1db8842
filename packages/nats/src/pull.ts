import type { Logger } from '@busbar/core/transport';
import type { ConsumerMessages, JetStreamClient, JsMsg } from 'nats';
import type { Topology } from './topology.js';

export interface ConsumerContext {
  readonly js: JetStreamClient;
  readonly topology: Topology;
  readonly logger: Logger;
  readonly ackWaitMs: number;
  readonly pullExpiresMs: number;
  /** A round trip to the server: what it sent before arrives before this resolves. */
  readonly flush: () => Promise<void>;
  /** False while the connection is down: missed heartbeats then mean nothing. */
  readonly connected: () => boolean;
}

export interface PullSpec {
  /** The durable consumer's name. */
  readonly name: string;
  /** Messages per pull (`max_messages`). */
  readonly batch: number;
  /**
   * Makes sure the stream and the consumer exist; resolves with the stream's name. `again` after a
   * restart: what is cached about them may be stale.
   */
  readonly ensure: (again: boolean) => Promise<string>;
  readonly onMessage: (m: JsMsg) => void;
  readonly onError: (error: Error) => void;
}

/** Bound on the best-effort consumer info sent after closing a pull loop (it must not hold up a close). */
const INFO_TIMEOUT_MS = 2_000;

/**
 * One durable pull consumer consumed with `consume()`. Missed heartbeats (while connected) or a vanished
 * consumer or stream re-create it and restart the loop, with a backoff (nats.node#590).
 */
export class PullLoop {
  readonly #ctx: ConsumerContext;
  readonly #spec: PullSpec;
  #stream = '';
  #messages: ConsumerMessages | undefined;
  #restarting: Promise<void> | undefined;
  #active = true;

  constructor(ctx: ConsumerContext, spec: PullSpec) {
    this.#ctx = ctx;
    this.#spec = spec;
  }

  async start(): Promise<void> {
    this.#stream = await this.#spec.ensure(false);
    await this.#consume();
  }

  async #consume(): Promise<void> {
    const consumer = await this.#ctx.topology.hedge(() => this.#ctx.js.consumers.get(this.#stream, this.#spec.name));
    const current = await consumer.consume({
      max_messages: this.#spec.batch,
      expires: this.#ctx.pullExpiresMs,
      callback: this.#spec.onMessage,
    });
    if (!this.#active) {
      // Stopped while a restart was re-creating the loop.
      await current.close().catch(() => undefined);
      return;
    }
    this.#messages = current;
    void this.#watch(current);
  }

  #restart(why: string): void {
    if (!this.#active || this.#restarting) return;
    this.#ctx.logger.warn(`NATS consumer '${this.#spec.name}' on '${this.#stream}' ${why}: re-creating it`);
    const old = this.#messages;
    this.#restarting = (async () => {
      await old?.close().catch(() => undefined);
      await this.#info();
      for (let wait = 250; this.#active; wait = Math.min(wait * 2, 5_000)) {
        try {
          this.#stream = await this.#spec.ensure(true);
          await this.#consume();
          return;
        } catch (error) {
          this.#spec.onError(error instanceof Error ? error : new Error(String(error)));
          await new Promise((resolve) => setTimeout(resolve, wait));
        }
      }
    })().finally(() => {
      this.#restarting = undefined;
    });
  }

  async #watch(current: ConsumerMessages): Promise<void> {
    for await (const status of await current.status()) {
      if (!this.#active || this.#messages !== current) return;
      const type = String(status.type);
      if (type === 'heartbeats_missed' && this.#ctx.connected() && Number(status.data) >= 2) {
        this.#restart('missed its heartbeats');
      } else if (type === 'consumer_not_found' || type === 'consumer_deleted' || type === 'stream_not_found') {
        this.#restart('was not found');
      }
    }
  }

  /**
   * nats-server 2.9 loses a nak'd message popped for a stale pull request (one whose inbox is gone) and
   * delivers the next one twice; a consumer info makes the server drop stale requests first. Skipped
   * while disconnected (it could only time out), and bounded.
   */
  async #info(): Promise<void> {
    if (this.#ctx.connected() && this.#stream !== '') {
      await this.#bounded(this.#ctx.topology.consumerInfo(this.#stream, this.#spec.name));
    }
  }

  /** Waits for a best-effort round trip at most {@link INFO_TIMEOUT_MS}: it must not hold up a close. */
  async #bounded(work: Promise<unknown>): Promise<void> {
    let timer: NodeJS.Timeout | undefined;
    const bound = new Promise<void>((resolve) => {
      timer = setTimeout(resolve, INFO_TIMEOUT_MS);
    });
    await Promise.race([work.catch(() => undefined), bound]);
    clearTimeout(timer);
  }

  /**
   * Stops pulling. The inbox stays open for one round trip first: what the server already sent to this loop
   * arrives on it (the member gives those back once the loop is closed, see consumer.ts) instead of being
   * dropped with the inbox and coming back only after the ack wait. Only a message the server sends within
   * that last round trip still is. Messages are never nak'd while the loop is open: the server would hand them
   * straight back to it.
   */
  async stop(): Promise<void> {
    this.#active = false;
    // A restart still under way closes the loop it creates (see #consume); it is not awaited, as it may be
    // waiting for an unreachable server.
    if (this.#messages !== undefined && this.#ctx.connected()) await this.#bounded(this.#ctx.flush());
    await this.#messages?.close().catch(() => undefined);
    await this.#info();
  }

  /**
   * Core settled everything by now, retry copies included: a second consumer info makes the server drop
   * this loop's stale pull requests before a copy published during the close comes due (it would be sent
   * to the gone inbox and only come back after the ack wait).
   */
  async close(): Promise<void> {
    const wasActive = this.#active;
    this.#active = false;
    await this.#messages?.close().catch(() => undefined);
    if (!wasActive) await this.#info();
  }
}
