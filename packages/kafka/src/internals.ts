/**
 * Everything of @busbar/kafka that reaches into kafkajs beyond its documented API: one patch of kafkajs'
 * `Connection`, fenced to busbar's own connections; kafkajs' per-send grouping of records, replaced for
 * busbar's producers only; kafkajs' record decoder and encoder, replaced by ones with the same result
 * (records.ts); and one reading of kafkajs' header merge. Each is pinned by test/internals.test.ts, test/internals-grouping.test.ts
 * and test/records.test.ts. kafkajs has had no release since 2.2.4 (2023), so the version is checked: another
 * one is refused unless `BUSBAR_KAFKAJS_UNTESTED=1` says to run it anyway.
 */
import { createRequire } from 'node:module';
import { ConfigError } from '@busbar/core';
import type { ISocketFactory, Message, PartitionerArgs } from 'kafkajs';
import { decodeRecord, type RecordArgs, type RecordBatchContext, type RecordReader, recordBytes } from './records.js';

const require = createRequire(import.meta.url);

/** The kafkajs release whose internals this file was written against and tested with. */
export const TESTED_KAFKAJS = '2.2.4';
/** Set to `1` to run on an untested kafkajs version (at your own risk: the patch below may not fit it). */
export const UNTESTED_KAFKAJS_ENV = 'BUSBAR_KAFKAJS_UNTESTED';

/** The installed kafkajs version, read once at load. */
export const installedKafkajs: string = (require('kafkajs/package.json') as { version: string }).version;

/** Marks busbar's partitioners (a global symbol: two copies of this package in one process share it). */
const BUSBAR_PARTITIONER = Symbol.for('@busbar/kafka/partitioner');

type Partitioner = ((args: PartitionerArgs) => number) & { [BUSBAR_PARTITIONER]?: true };
export interface GroupingArgs {
  readonly topic: string;
  readonly partitionMetadata: PartitionerArgs['partitionMetadata'];
  readonly messages: readonly Message[];
  readonly partitioner: Partitioner;
}
type Grouping = (args: GroupingArgs) => Record<number, Message[]>;
type RecordDecoder = (reader: RecordReader, context?: RecordBatchContext) => Record<string, unknown>;
type RecordEncoder = (args: RecordArgs) => object;
/** kafkajs' protocol `Encoder`: what its record encoder returns. */
const Encoder = require('kafkajs/src/protocol/encoder.js') as { prototype: object };

/** Marks `partitioner` as busbar's: sends through it take {@link groupPerPartition}. */
export function busbarPartitioner(partitioner: (args: PartitionerArgs) => number): Partitioner {
  return Object.assign(partitioner, { [BUSBAR_PARTITIONER]: true as const });
}

/**
 * kafkajs' `groupMessagesPerPartition`, in one pass: its own builds every partition's array anew for each
 * record (`[...current, message]` and an object per record), so a send costs O(n^2) in its records per
 * partition: 0.5 us per record for a send of 10, 1.4 for 1,000, 3.5 for 3,000 (Node 24), and busbar's
 * coalesced sends hold up to `maxMessageBytes` of records. Same result: an object of arrays by partition,
 * records in their order.
 */
export function groupPerPartition({
  topic,
  partitionMetadata,
  messages,
  partitioner,
}: GroupingArgs): Record<number, Message[]> {
  const grouped: Record<number, Message[]> = {};
  if (partitionMetadata.length === 0) return grouped;
  for (const message of messages) {
    const partition = partitioner({ topic, partitionMetadata, message });
    const list = grouped[partition];
    if (list === undefined) grouped[partition] = [message];
    else list.push(message);
  }
  return grouped;
}

/** Marks busbar's replacements in kafkajs' module slots (global: two copies of this package share it). */
const BUSBAR_MODULE = Symbol.for('@busbar/kafka/replaced-module');

/**
 * Replaces kafkajs' module `path` in Node's require cache by `replace(original)`, before `user` (the kafkajs
 * module that binds it once, at its load) is loaded; false when `user` is loaded already, or on another
 * kafkajs than the tested one. (The package keeps `sideEffects: false`: nothing imports this file for this
 * alone, and a bundle that drops it has no kafkajs to change.)
 */
function replaceModule<T>(path: string, user: string, replace: (original: T) => T): boolean {
  if (installedKafkajs !== TESTED_KAFKAJS) return false;
  const file = require.resolve(`kafkajs/src/${path}`);
  if ((require.cache[file]?.exports as { [BUSBAR_MODULE]?: true } | undefined)?.[BUSBAR_MODULE]) return true;
  if (require.cache[require.resolve(`kafkajs/src/${user}`)]) return false;
  const original = require(file) as T;
  const entry = require.cache[file];
  if (entry === undefined) return false;
  entry.exports = Object.assign(replace(original) as object, { [BUSBAR_MODULE]: true as const });
  return true;
}

/**
 * Whether busbar's producers group records in one pass: {@link groupPerPartition} in front of kafkajs'
 * grouping, for busbar's partitioners only (another kafkajs user's sends keep kafkajs' own). kafkajs'
 * producer (`sendMessages.js`) binds it when kafkajs loads: when the application loaded kafkajs first,
 * busbar works the same, with kafkajs' cost per send. Set once, at load.
 */
export const onePassGrouping: boolean = replaceModule<Grouping>(
  'producer/groupMessagesPerPartition.js',
  'producer/sendMessages.js',
  (original) => (args) => (args.partitioner[BUSBAR_PARTITIONER] ? groupPerPartition(args) : original(args)),
);

/**
 * kafkajs' record decoder and encoder, replaced by records.ts' for every kafkajs client of the process: the
 * results are the same (test/records.test.ts compares them on random and hostile input), so there is no
 * reason to fence them. kafkajs binds them at a client's first fetch and first send, so this works even when
 * the application loaded kafkajs first, unless it had fetched or sent already.
 */
export const fastRecordDecoding: boolean = replaceModule<RecordDecoder>(
  'protocol/recordBatch/record/v0/decoder.js',
  'protocol/recordBatch/v0/decoder.js',
  () => (reader, context) => decodeRecord(reader, context),
);
/** See fastRecordDecoding. */
export const fastRecordEncoding: boolean = replaceModule<RecordEncoder>(
  'protocol/recordBatch/record/v0/index.js',
  'protocol/requests/produce/v3/request.js',
  (original) => (args) => {
    const bytes = recordBytes(args);
    if (bytes === undefined) return original(args);
    // What kafkajs' Encoder holds (its constructor would allocate a buffer of its own first).
    return Object.assign(Object.create(Encoder.prototype) as object, { buf: bytes, offset: bytes.length });
  },
);

// After onePassGrouping: loading kafkajs loads its producer (its record codec loads at a first fetch or send).
const kafkajs = require('kafkajs') as typeof import('kafkajs');

// kafkajs is CommonJS and Node's ESM loader cannot see all of its named
// exports (CompressionCodecs, for one): take them from the default export.
export const {
  Kafka,
  AssignerProtocol,
  CompressionCodecs,
  CompressionTypes,
  KafkaJSNonRetriableError,
  logLevel,
  Partitioners,
} = kafkajs;

/** Refuses a kafkajs other than the tested one (a ConfigError naming both), unless the env says otherwise. */
export function checkKafkajsVersion(
  version: string = installedKafkajs,
  env: Readonly<Record<string, string | undefined>> = process.env,
): void {
  if (version === TESTED_KAFKAJS || env[UNTESTED_KAFKAJS_ENV] === '1') return;
  throw new ConfigError(
    `@busbar/kafka is tested with kafkajs ${TESTED_KAFKAJS} only and kafkajs ${version} is installed: it patches kafkajs internals that may differ there. Install kafkajs@${TESTED_KAFKAJS}, or set ${UNTESTED_KAFKAJS_ENV}=1 to run it untested`,
  );
}

/** The fields of kafkajs' RequestQueue (src/network/requestQueue) the patch reads and sets. */
export interface RequestQueueState {
  pending: unknown[];
  throttledUntil: number;
  throttleCheckTimeoutId: NodeJS.Timeout | null;
  checkPendingRequests(): void;
  scheduleCheckPendingRequests(): void;
}

/** The fields of kafkajs' Connection (src/network/connection) the patch reads and sets. */
export interface ConnectionState {
  chunks: Buffer[];
  bytesBuffered: number;
  bytesNeeded: number;
  socketFactory: ISocketFactory;
  requestQueue: RequestQueueState;
  isConnected(): boolean;
  connect(this: ConnectionState, ...args: unknown[]): Promise<unknown>;
  send(this: ConnectionState, ...args: unknown[]): Promise<unknown>;
  processData(this: ConnectionState, data: Buffer): void;
  socket?: { destroy(error?: Error): void } | null;
}

export interface ConnectionClass {
  new (options: Record<string, unknown>): ConnectionState;
  prototype: ConnectionState;
}

/** kafkajs' Connection class (not exported by kafkajs). */
export function connectionClass(): ConnectionClass {
  return require('kafkajs/src/network/connection.js') as ConnectionClass;
}

/** kafkajs' RequestQueue retries pending requests this often (its CHECK_PENDING_REQUESTS_INTERVAL). */
const CHECK_PENDING_MS = 10;

/**
 * busbar's socket factories, and those of closed transports. Kept on a global symbol so that two copies
 * of this package in one process (dist and src, two versions) share them: the first copy's patch serves
 * both.
 */
interface Registry {
  readonly busbar: WeakSet<ISocketFactory>;
  readonly closed: WeakSet<ISocketFactory>;
}
const REGISTRY = Symbol.for('@busbar/kafka/socket-factories');
const PATCHED = Symbol.for('@busbar/kafka/patched-connect');

function registry(): Registry {
  const global = globalThis as { [REGISTRY]?: Registry };
  global[REGISTRY] ??= { busbar: new WeakSet(), closed: new WeakSet() };
  return global[REGISTRY];
}

/** Marks `factory` as busbar's: connections made through it get the patched connect (below). */
export function ownFactory(factory: ISocketFactory): void {
  registry().busbar.add(factory);
}

/** The transport of `factory` is closed: its connections fail at once from now on, without retry. */
export function closeFactory(factory: ISocketFactory): void {
  registry().closed.add(factory);
}

/**
 * kafkajs' RequestQueue schedules its pending-request check even when nothing is pending, with a delay of
 * `throttledUntil - now`: -1 minus the epoch when never throttled. Node clamps that to 1 ms (Node 24 also
 * prints TimeoutNegativeWarning), the check schedules itself again, and every connection spins a 1 ms
 * timer for ever (kafkajs#1751, #1704; unmerged upstream). Scheduled only when something is pending.
 */
function scheduleCheckPendingRequests(this: RequestQueueState): void {
  if (this.throttleCheckTimeoutId || this.pending.length === 0) return;
  const throttled = this.throttledUntil - Date.now();
  this.throttleCheckTimeoutId = setTimeout(
    () => {
      this.throttleCheckTimeoutId = null;
      this.checkPendingRequests();
    },
    throttled > 0 ? throttled : CHECK_PENDING_MS,
  );
}

/**
 * The `code` of a socket error that says the peer does not speak Kafka (sockets.ts sets it): a port of another
 * protocol answered, and will again.
 */
export const NOT_KAFKA_CODE = 'BUSBAR_NOT_KAFKA';

/** OpenSSL's certificate verify errors and Node's host name check, as a socket reports them in `code`. */
export const TLS_VERIFY_CODE =
  /^(CERT_|DEPTH_ZERO_SELF_SIGNED_CERT|SELF_SIGNED_CERT_IN_CHAIN|UNABLE_TO_|ERR_TLS_CERT|ERR_SSL_|HOSTNAME_MISMATCH)/;

/**
 * kafkajs wraps a TLS verification failure (an untrusted, expired or wrongly named certificate) in a
 * retriable KafkaJSConnectionError and retries it with backoff until its retries run out, although the same
 * certificate fails the same way again: busbar's connect then ended in a timeout that did not say why. Such a
 * failure becomes non-retriable here (message and code kept), so the connect fails at once, naming the cause.
 */
function tlsVerifyFailure(error: unknown): Error | undefined {
  const code = (error as { code?: unknown } | undefined)?.code;
  if (typeof code !== 'string' || !(TLS_VERIFY_CODE.test(code) || code === NOT_KAFKA_CODE)) return undefined;
  const failure = new KafkaJSNonRetriableError((error as Error).message);
  return Object.assign(failure, { code });
}

/**
 * Installs the patch of kafkajs' `Connection.prototype.connect` (once per process; called when the first
 * Kafka transport is created, never at import). It changes nothing for connections whose socket factory
 * is not busbar's: another kafkajs user in the process sees kafkajs as it is. For busbar's connections:
 * - kafkajs 2.2.4 resets a connection's receive buffer only in its constructor, and reconnects reuse the
 *   connection object. When a connection is cut in the middle of a response, the next connection's bytes
 *   are appended to that stale partial frame: the decoder reads a garbage size and throws a RangeError
 *   (ERR_BUFFER_OUT_OF_BOUNDS) from the socket's data handler, an uncaught exception that kills the
 *   process (seen in busbar's fault tests). Every new socket starts with an empty buffer.
 * - a connection of a closed transport fails at once without retry, which ends kafkajs' retry loops.
 * - a TLS verification failure, on connect or on the first request, is not retried (tlsVerifyFailure above);
 *   nor is a first answer that is no Kafka (NOT_KAFKA_CODE); bytes kafkajs cannot frame fail the socket, not
 *   the process.
 * - the request queue does not spin an idle timer (see scheduleCheckPendingRequests above).
 */
export function installKafkajsPatch(): void {
  checkKafkajsVersion();
  const proto = connectionClass().prototype;
  const original = proto.connect as ConnectionState['connect'] & { [PATCHED]?: true };
  if (original[PATCHED]) return;
  const factories = registry();
  const connect = function (this: ConnectionState, ...args: unknown[]): Promise<unknown> {
    if (!factories.busbar.has(this.socketFactory)) return original.apply(this, args);
    if (factories.closed.has(this.socketFactory)) {
      return Promise.reject(new KafkaJSNonRetriableError('The Kafka transport is closed'));
    }
    // connect() on a live connection is a no-op in kafkajs: only a new socket may start from empty.
    if (!this.isConnected()) {
      this.chunks = [];
      this.bytesBuffered = 0;
      this.bytesNeeded = 4;
    }
    const queue = this.requestQueue;
    if (!Object.hasOwn(queue, 'scheduleCheckPendingRequests')) {
      queue.scheduleCheckPendingRequests = scheduleCheckPendingRequests;
    }
    return original.apply(this, args).catch((error: unknown) => {
      throw tlsVerifyFailure(error) ?? error;
    });
  };
  Object.defineProperty(connect, PATCHED, { value: true });
  proto.connect = connect;
  // kafkajs decodes a frame whose size is below 4 (or negative) from the socket's data handler and throws there,
  // an uncaught exception that kills the process: a peer of another protocol did it with its first bytes. The
  // socket fails instead, as any other broken connection does (while connecting, sockets.ts has already failed
  // it as a peer that is no Kafka; later it is a broken stream, and the connection is made again).
  const processData = proto.processData;
  proto.processData = function (this: ConnectionState, data: Buffer): void {
    if (!factories.busbar.has(this.socketFactory)) {
      processData.call(this, data);
      return;
    }
    try {
      processData.call(this, data);
    } catch (error) {
      this.socket?.destroy(new Error(`an answer that is no Kafka response frame (${(error as Error).message})`));
    }
  };
  // Under TLS 1.3 the server checks the client certificate after the client's handshake is done: a refused
  // one (mTLS) fails the first request, not the connect.
  const send = proto.send;
  proto.send = function (this: ConnectionState, ...args: unknown[]): Promise<unknown> {
    if (!factories.busbar.has(this.socketFactory)) return send.apply(this, args);
    return send.apply(this, args).catch((error: unknown) => {
      throw tlsVerifyFailure(error) ?? error;
    });
  };
}

type RawHeaderValue = Buffer | string | null | undefined | (Buffer | string | null | undefined)[];

const INHERITED: Record<string, unknown> = {};

/**
 * kafkajs merges repeated header keys with `obj[key] === undefined ? value : [obj[key], value]`, so a
 * header named like a member every object inherits (`constructor`, `toString`, `__proto__`) starts with
 * the inherited function or object: the values from the wire are the rest.
 */
export function wireHeaderValues(name: string, value: RawHeaderValue): RawHeaderValue {
  if (Array.isArray(value) && name in INHERITED && (value[0] as unknown) === INHERITED[name]) return value.slice(1);
  return value;
}
