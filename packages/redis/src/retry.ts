import type { Logger } from '@busbar/core/transport';
import type { RedisClient } from './client.js';
import { toBusbarError } from './errors.js';
import type { TopicKeys } from './keys.js';
import { moveDue } from './scripts.js';

export interface RetryMoverInit {
  readonly client: RedisClient;
  readonly keys: TopicKeys;
  readonly topic: string;
  readonly retryPollMs: number;
  readonly secrets: readonly string[];
  readonly logger: Logger;
}

/** Batch size of one move: a large backlog of due retries is moved in several short script runs. */
const BATCH = 100;

/**
 * Brings a group's due retries back: runs the move script when the earliest
 * retry this member scheduled is due, and every `retryPollMs` for retries
 * scheduled by other members (or before a restart). Any member may move any
 * due retry; the script is atomic, so concurrent movers never duplicate one.
 */
export class RetryMover {
  readonly #i: RetryMoverInit;
  #timer: NodeJS.Timeout | undefined;
  #at = Number.POSITIVE_INFINITY;
  #stopped = false;

  constructor(init: RetryMoverInit) {
    this.#i = init;
  }

  /** Run a move in about `delayMs`, unless one is already due sooner. */
  schedule(delayMs: number): void {
    if (this.#stopped) return;
    const wait = Math.max(0, delayMs);
    const at = Date.now() + wait;
    if (this.#timer && at >= this.#at) return;
    clearTimeout(this.#timer);
    this.#at = at;
    this.#timer = setTimeout(() => void this.#move(), wait);
    this.#timer.unref();
  }

  async #move(): Promise<void> {
    this.#timer = undefined;
    this.#at = Number.POSITIVE_INFINITY;
    let next = this.#i.retryPollMs;
    try {
      const { client, keys } = this.#i;
      const [moved, dueIn] = (await moveDue.run(client, [keys.retrySet, keys.retryStream], [BATCH])) as [
        number,
        number,
      ];
      if (moved === BATCH) next = 0;
      else if (dueIn >= 0) next = Math.min(dueIn, next);
    } catch (error) {
      if (!this.#stopped) {
        this.#i.logger.warn(`Moving due retries of '${this.#i.topic}' failed`, {
          error: toBusbarError(error, { what: 'Moving due retries', op: 'consume', secrets: this.#i.secrets }),
        });
      }
    }
    this.schedule(next);
  }

  stop(): void {
    this.#stopped = true;
    clearTimeout(this.#timer);
  }
}
