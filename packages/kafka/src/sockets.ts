import net, { type Socket } from 'node:net';
import tls from 'node:tls';
import type { ISocketFactory } from 'kafkajs';
import { closeFactory, ownFactory } from './internals.js';

/** kafkajs' own keep-alive delay for its sockets. */
const KEEP_ALIVE_MS = 60_000;

/** What kafkajs' default socket factory does, through the documented `socketFactory` option. */
const connectSocket: ISocketFactory = ({ host, port, ssl, onConnect }) => {
  const socket = ssl
    ? tls.connect({ host, port, ...(net.isIP(host) ? {} : { servername: host }), ...ssl }, onConnect)
    : net.connect({ host, port }, onConnect);
  socket.setKeepAlive(true, KEEP_ALIVE_MS);
  return socket;
};

/**
 * The sockets of one transport's kafkajs clients, counted. kafkajs cannot be told to stop: a disconnect
 * waits for pending requests (up to the request timeout on a silent broker) and its retry loops keep
 * reconnecting after a failed connect. Shutting down destroys every socket left and makes every later
 * connect fail without retry (internals.ts), so nothing of a closed bus keeps the process alive.
 */
export class SocketRegistry {
  readonly factory: ISocketFactory;
  readonly #sockets = new Set<Socket>();

  constructor() {
    this.factory = (args) => {
      const socket = connectSocket(args);
      this.#sockets.add(socket);
      socket.once('close', () => this.#sockets.delete(socket));
      return socket;
    };
    ownFactory(this.factory);
  }

  shutdown(): void {
    closeFactory(this.factory);
    // With an error, so kafkajs rejects what waits on the socket (and clears its connect timer) at once.
    for (const socket of this.#sockets) socket.destroy(new Error('The Kafka transport is closed'));
    this.#sockets.clear();
  }
}
