import { REQUEST_TIMEOUT_MS } from './util.js';

/**
 * The requester half of every raw request/reply side: a correlation id per request, the callers waiting by id,
 * a timeout each, the JSON reply decoded. The raw sides differ only in how a request is sent and where its
 * reply arrives, so that is all they write.
 */
export class PendingReplies {
  readonly #waiting = new Map<string, (reply: Buffer | Error) => void>();
  #seq = 0;

  /** Hands the request `id` its reply body, or why it failed; late and unknown ids (another block's) are dropped. */
  settle(id: string, reply: Buffer | Error): void {
    this.#waiting.get(id)?.(reply);
  }

  /** `send(id)` sends one request under a new id; resolves with the decoded reply, rejects after REQUEST_TIMEOUT_MS. */
  request(send: (id: string) => void): Promise<unknown> {
    const id = (this.#seq++).toString(36);
    return new Promise<unknown>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#waiting.delete(id);
        reject(new Error(`no reply within ${REQUEST_TIMEOUT_MS} ms`));
      }, REQUEST_TIMEOUT_MS);
      this.#waiting.set(id, (reply) => {
        this.#waiting.delete(id);
        clearTimeout(timer);
        if (reply instanceof Error) reject(reply);
        else resolve(JSON.parse(reply.toString()));
      });
      send(id);
    });
  }
}
