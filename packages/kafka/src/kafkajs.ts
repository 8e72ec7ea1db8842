import { createRequire } from 'node:module';
import type { ISocketFactory } from 'kafkajs';
import kafkajs from 'kafkajs';
import { closedFactories } from './sockets.js';

// kafkajs is CommonJS and Node's ESM loader cannot see all of its named
// exports (CompressionCodecs, for one): take them from the default export.
export const { Kafka, AssignerProtocol, CompressionCodecs, CompressionTypes, KafkaJSNonRetriableError, logLevel } =
  kafkajs;

/**
 * kafkajs 2.2.4 resets a connection's receive buffer only in its constructor, and reconnects reuse the
 * connection object. When a connection is cut in the middle of a response, the next connection's bytes are
 * appended to that stale partial frame: the decoder reads a garbage size and throws a RangeError
 * (ERR_BUFFER_OUT_OF_BOUNDS) from the socket's data handler, an uncaught exception that kills the process.
 * Seen in busbar's fault tests. Start every connection with an empty buffer; done once, on load.
 * Also: a connection of a closed transport (sockets.ts) fails at once, without retry.
 */
interface ConnectionState {
  chunks: Buffer[];
  bytesBuffered: number;
  bytesNeeded: number;
  socketFactory: ISocketFactory;
  isConnected(): boolean;
  connect(this: ConnectionState, ...args: unknown[]): unknown;
}
const require = createRequire(import.meta.url);
const Connection = require('kafkajs/src/network/connection.js') as { prototype: ConnectionState };
const originalConnect = Connection.prototype.connect;
if (!(originalConnect as { busbarPatched?: boolean }).busbarPatched) {
  const connect = function (this: ConnectionState, ...args: unknown[]): unknown {
    // A closed transport's clients must not reconnect: failing without retry ends kafkajs' retry loops.
    if (closedFactories.has(this.socketFactory)) {
      return Promise.reject(new KafkaJSNonRetriableError('The Kafka transport is closed'));
    }
    // connect() on a live connection is a no-op in kafkajs: only a new socket may start from empty.
    if (!this.isConnected()) {
      this.chunks = [];
      this.bytesBuffered = 0;
      this.bytesNeeded = 4;
    }
    return originalConnect.apply(this, args);
  };
  Object.defineProperty(connect, 'busbarPatched', { value: true });
  Connection.prototype.connect = connect;
}
