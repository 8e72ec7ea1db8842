import net, { type Socket } from 'node:net';
import tls from 'node:tls';
import type { ISocketFactory } from 'kafkajs';
import { closeFactory, NOT_KAFKA_CODE, ownFactory } from './internals.js';

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
 * The first answer on a connection kafkajs opens while connecting is ApiVersions' (or a SASL handshake's): a frame
 * of a few kilobytes. A size outside 4 bytes (its correlation id) .. 1 MiB is a peer of another protocol, whose
 * bytes kafkajs would otherwise wait for (an HTTP server's 'HTTP' reads as 1.2 GB) until the connect times out.
 */
const FIRST_ANSWER_MAX = 1_048_576;

const HUNG_UP =
  'the server closed the connection without answering (a TLS port does that to a plaintext client, and so do ports of some other protocols)';

function checkFirstAnswer(socket: Socket, chunk: Buffer): void {
  if (chunk.length < 4) return;
  const size = chunk.readInt32BE(0);
  if (size >= 4 && size <= FIRST_ANSWER_MAX) return;
  const tls = (chunk[0] === 0x15 || chunk[0] === 0x16) && chunk[1] === 0x03;
  const hint = tls ? 'it speaks TLS: set the tls option' : `it began with ${firstBytes(chunk)}`;
  const message = `the server does not speak Kafka: its answer is no Kafka response (${hint}); is this a Kafka listener's port (9092)?`;
  socket.destroy(Object.assign(new Error(message), { code: NOT_KAFKA_CODE }));
}

/** The peer's first bytes as a person reads them: text when they are printable, else hex. */
function firstBytes(chunk: Buffer): string {
  const head = chunk.subarray(0, 12);
  const text = head.toString('latin1');
  return /^[\x20-\x7e]+$/.test(text) ? JSON.stringify(text) : `0x${head.toString('hex')}`;
}

/**
 * The sockets of one transport's kafkajs clients, counted. kafkajs cannot be told to stop: a disconnect
 * waits for pending requests (up to the request timeout on a silent broker) and its retry loops keep
 * reconnecting after a failed connect. Shutting down destroys every socket left and makes every later
 * connect fail without retry (internals.ts), so nothing of a closed bus keeps the process alive.
 */
export class SocketRegistry {
  readonly factory: ISocketFactory;
  readonly #sockets = new Set<Socket>();
  /** While the transport connects, the first answer on each socket is checked for being Kafka's at all. */
  #connecting = true;
  /** The last error a socket had: kafkajs retries until the connect times out, and then says only that. */
  #lastError: Error | undefined;

  constructor() {
    this.factory = (args) => {
      const socket = connectSocket(args);
      this.#sockets.add(socket);
      let answered = false;
      socket.on('error', (error) => {
        this.#lastError = error;
      });
      socket.once('close', (failed) => {
        this.#sockets.delete(socket);
        if (!answered && !failed) this.#lastError = new Error(HUNG_UP);
      });
      socket.once('data', (chunk: Buffer) => {
        answered = true;
        if (this.#connecting) checkFirstAnswer(socket, chunk);
      });
      return socket;
    };
    ownFactory(this.factory);
  }

  /** The transport is connected: later first answers (a reconnect's first fetch) may be of any size. */
  connected(): void {
    this.#connecting = false;
  }

  get lastError(): Error | undefined {
    return this.#lastError;
  }

  shutdown(): void {
    closeFactory(this.factory);
    // With an error, so kafkajs rejects what waits on the socket (and clears its connect timer) at once.
    for (const socket of this.#sockets) socket.destroy(new Error('The Kafka transport is closed'));
    this.#sockets.clear();
  }
}
