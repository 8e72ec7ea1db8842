import { type ConnectionEvent, channels } from './events.js';
import type { Logger } from './logger.js';
import { sanitizeError } from './redact.js';
import type { ConnectionHealth, ConnectionState } from './transport/spi.js';

let buses = 0;

/** Connection states reported by a transport: the source of `bus.health()` and of `busbar:connection` events. */
export class Connections {
  readonly #states = new Map<string, ConnectionHealth>();
  readonly #bus = ++buses;
  readonly #system: string;
  readonly #logger: Logger;
  readonly #secrets: readonly string[];
  /** Set when the bus closes: state changes are then expected and not worth a warning. */
  quiet = false;
  /** Set once the bus has closed: what drivers report afterwards updates health() but is no event any more. */
  #ended = false;

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
    if (!this.#ended && channels.connection.hasSubscribers) {
      const event: ConnectionEvent = {
        system: this.#system,
        connection,
        state,
        bus: this.#bus,
        ...(text ? { error: text } : {}),
      };
      channels.connection.publish(event);
    }
  }

  /** A connection closed on purpose (its subscription closed): gone from health(), and reported `closed`. */
  forget(connection: string): void {
    if (this.#states.delete(connection)) this.#closed(connection);
  }

  /**
   * The bus closed: every connection it had is reported `closed`, once. Without it, a metric of connection
   * state kept a closed bus's connections at "down" for the life of the process (an alert on a service that
   * only closed a bus).
   */
  end(): void {
    if (this.#ended) return;
    for (const connection of this.#states.keys()) this.#closed(connection);
    this.#ended = true;
  }

  #closed(connection: string): void {
    if (this.#ended || !channels.connection.hasSubscribers) return;
    const event: ConnectionEvent = { system: this.#system, connection, state: 'closed', bus: this.#bus };
    channels.connection.publish(event);
  }

  list(): ConnectionHealth[] {
    return [...this.#states.values()];
  }
}
