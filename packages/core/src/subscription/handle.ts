import type { Subscription } from './state.js';

/** What `subscribe` returns: a narrow view of the runtime, so users cannot reach its internals. */
export class SubscriptionHandle implements Subscription {
  readonly #runtime: Subscription;
  readonly #forget: () => void;
  constructor(runtime: Subscription, forget: () => void) {
    this.#runtime = runtime;
    this.#forget = forget;
  }
  get topic(): string {
    return this.#runtime.topic;
  }
  get group(): string | undefined {
    return this.#runtime.group;
  }
  get closed(): boolean {
    return this.#runtime.closed;
  }
  /** `await using sub = await bus.subscribe(...)`: closed when the scope ends. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }

  async close(): Promise<void> {
    await this.#runtime.close();
    this.#forget();
  }
}
