import { type ConnectionEvent, channels } from './events.js';
import type { Logger } from './logger.js';
import { sanitizeError } from './redact.js';
import type { ConnectionHealth, ConnectionState } from './transport/spi.js';

/** Connection states reported by a transport: the source of `bus.health()` and of `busbar:connection` events. */
export class Connections {
  readonly #states = new Map<string, ConnectionHealth>();
  readonly #system: string;
  readonly #logger: Logger;
  readonly #secrets: readonly string[];
  /** Set when the bus closes: state changes are then expected and not worth a warning. */
  quiet = false;

  constructor(system: string, logger: Logger, secrets: readonly string[]) {
    this.#system = system;
    this.#logger = logger;
    this.#secrets = secrets;
  }

  report(connection: string, state: ConnectionState, error?: unknown): void {
    const text = error === undefined ? undefined : sanitizeError(error, this.#secrets).message;
    const previous = this.#states.get(connection);
    if (previous?.state === state && previous.error === text) return;
    this.#states.set(connection, { name: connection, state, since: new Date(), ...(text ? { error: text } : {}) });
    if (previous && previous.state !== state && !this.quiet) {
      const level = state === 'up' ? 'info' : 'warn';
      this.#logger[level](`Connection '${connection}' is ${state}`, text ? { error: text } : undefined);
    }
    if (channels.connection.hasSubscribers) {
      const event: ConnectionEvent = { system: this.#system, connection, state, ...(text ? { error: text } : {}) };
      channels.connection.publish(event);
    }
  }

  forget(connection: string): void {
    this.#states.delete(connection);
  }

  list(): ConnectionHealth[] {
    return [...this.#states.values()];
  }
}
