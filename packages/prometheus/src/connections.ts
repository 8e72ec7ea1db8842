import type { ConnectionEvent } from '@busbar/core';

/**
 * `busbar_connection_up` per transport and connection name, over every bus of the process: two buses of one
 * transport have connections of the same names, so the series is 1 only while each bus's connection of that
 * name is up, and it goes away with the last bus that had one (closed on purpose: gone, not down).
 */
export class ConnectionStates {
  readonly #up = new Map<string, Map<number, boolean>>();

  /** The series' value after `event`, or undefined when it should be removed. */
  update(event: ConnectionEvent): 0 | 1 | undefined {
    const key = `${event.system}\u0000${event.connection}`;
    let buses = this.#up.get(key);
    if (event.state === 'closed') {
      buses?.delete(event.bus);
      if (buses === undefined || buses.size === 0) {
        this.#up.delete(key);
        return undefined;
      }
    } else {
      if (buses === undefined) {
        buses = new Map();
        this.#up.set(key, buses);
      }
      buses.set(event.bus, event.state === 'up');
    }
    for (const up of buses.values()) if (!up) return 0;
    return 1;
  }
}
