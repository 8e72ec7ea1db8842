import { createRequire } from 'node:module';
import type { Socket } from 'node:net';
import type { ISocketFactory } from 'kafkajs';

const require = createRequire(import.meta.url);
const defaultSocketFactory = require('kafkajs/src/network/socketFactory.js') as () => ISocketFactory;

/** Socket factories of closed transports: kafkajs connections made through them fail at once (see kafkajs.ts). */
export const closedFactories = new WeakSet<ISocketFactory>();

/**
 * The sockets of one transport's kafkajs clients (kafkajs' own factory, counted). kafkajs cannot be told
 * to stop: a disconnect waits for pending requests (up to the request timeout on a silent broker) and
 * its retry loops keep reconnecting after a failed connect. Shutting down destroys every socket left and
 * makes every later connect fail without retry, so nothing of a closed bus keeps the process alive.
 */
export class SocketRegistry {
  readonly factory: ISocketFactory;
  readonly #sockets = new Set<Socket>();

  constructor() {
    const base = defaultSocketFactory();
    this.factory = (args) => {
      const socket = base(args);
      this.#sockets.add(socket);
      socket.once('close', () => this.#sockets.delete(socket));
      return socket;
    };
  }

  shutdown(): void {
    closedFactories.add(this.factory);
    // With an error, so kafkajs rejects what waits on the socket (and clears its connect timer) at once.
    for (const socket of this.#sockets) socket.destroy(new Error('The Kafka transport is closed'));
    this.#sockets.clear();
  }
}
