import { TimeoutError } from '@busbar/core';
import { withTimeout } from '@busbar/core/transport';
import { Redis } from 'ioredis';
import type { RedisClient } from './client.js';

/**
 * Redis has no heartbeat: a server that stops answering (a paused process, a network that drops packets without a
 * reset) leaves ioredis connected, `bus.health()` up and every command waiting. A PING every `intervalMs`,
 * bounded by `timeoutMs`, finds it: `onSilent` reports it and the connection is dropped, so ioredis reconnects
 * and sends again what it holds (as RabbitMQ's heartbeat and NATS' pings do for theirs). A reconnect whose
 * handshake goes unanswered as long is dropped too.
 */
export class Liveness {
  readonly #client: RedisClient;
  readonly #intervalMs: number;
  readonly #timeoutMs: number;
  readonly #onSilent: (error: Error) => void;
  #timer: NodeJS.Timeout | undefined;
  #pinging = false;

  constructor(client: RedisClient, intervalMs: number, timeoutMs: number, onSilent: (error: Error) => void) {
    this.#client = client;
    this.#intervalMs = intervalMs;
    this.#timeoutMs = timeoutMs;
    this.#onSilent = onSilent;
  }

  start(): void {
    this.#timer ??= setInterval(() => void this.#ping(), this.#intervalMs);
    this.#timer.unref();
  }

  stop(): void {
    clearInterval(this.#timer);
    this.#timer = undefined;
  }

  /** Since when the connection has been open but not ready (its AUTH, SELECT or ready check unanswered). */
  #handshakeSince: number | undefined;

  async #ping(): Promise<void> {
    const status = this.#client.status;
    if (status === 'connect') {
      // ioredis bounds the TCP connect, not what follows it: a server that went silent right then holds it here.
      this.#handshakeSince ??= Date.now();
      if (Date.now() - this.#handshakeSince >= this.#timeoutMs) {
        this.#handshakeSince = undefined;
        dropConnection(this.#client);
      }
      return;
    }
    this.#handshakeSince = undefined;
    if (this.#pinging || status !== 'ready') return;
    this.#pinging = true;
    try {
      await withTimeout(this.#client.ping(), this.#timeoutMs, `Redis did not answer PING within ${this.#timeoutMs} ms`);
    } catch (error) {
      // A reply error (an ACL without PING) is an answer; only silence counts.
      if (this.#timer !== undefined && error instanceof TimeoutError && this.#client.status === 'ready') {
        this.#onSilent(error);
        dropConnection(this.#client);
      }
    } finally {
      this.#pinging = false;
    }
  }
}

/**
 * Drops a connection so ioredis reconnects: the socket is destroyed, not ended (`disconnect(true)` ends it and
 * waits for a close a silent peer never sends, and then ioredis never reconnects). A Cluster reconnects its own.
 */
export function dropConnection(client: RedisClient): void {
  const stream = (client as { stream?: { destroy(): void } }).stream;
  if (client instanceof Redis && stream !== undefined) stream.destroy();
  else client.disconnect(true);
}
