/**
 * Everything this driver relies on in mqtt.js beyond its documented API, in one place. mqtt.js has no public
 * way to send a PUBACK after `handleMessage` has called back (`customHandleAcks` only picks the reason code of
 * an immediate PUBACK, and holding the `handleMessage` callback stalls every later packet of the connection,
 * the PUBACKs of our own publishes included). Ack after processing therefore needs the three behaviours
 * below; test/internals.test.ts pins each of them against a real Mosquitto, and the version check keeps an
 * untested mqtt.js from running them.
 */
import { createRequire } from 'node:module';
import { ConfigError } from '@busbar/core';
import type { IPublishPacket, MqttClient, Packet } from 'mqtt';

/** The mqtt.js versions these internals are tested with: 5.16.x (the `~5.16.0` range). */
export const TESTED_MQTT_RANGE = '>=5.16.0 <5.17.0';

/** Throws a ConfigError naming the tested range when `version` is outside it. */
export function checkMqttVersion(version: string): void {
  const match = /^(\d+)\.(\d+)\.(\d+)/.exec(version);
  if (match && Number(match[1]) === 5 && Number(match[2]) === 16) return;
  throw new ConfigError(
    `@busbar/mqtt relies on mqtt.js internals tested with mqtt ${TESTED_MQTT_RANGE}, but mqtt ${version} is installed: install mqtt@~5.16.0`,
  );
}

/** The installed mqtt.js version, as the import of 'mqtt' from this package resolves it. */
export function installedMqttVersion(): string {
  const pkg = createRequire(import.meta.url)('mqtt/package.json') as { version?: unknown };
  return typeof pkg.version === 'string' ? pkg.version : 'unknown';
}

checkMqttVersion(installedMqttVersion());

/**
 * Passed to mqtt.js's `handleMessage` callback to withhold the PUBACK. Relied on (mqtt.js 5.16
 * handlers/publish.js): for QoS 1, an error from `handleMessage` skips the PUBACK, goes to the packet loop's
 * `done`, which ignores it and reads the next packet; no 'error' event, no stall.
 */
const HOLD = new Error('busbar: PUBACK withheld until the message is settled');

/**
 * Takes over mqtt.js's PUBACKs of received QoS 1 messages: `decide` says per packet whether mqtt.js sends it
 * now (`'ack'`) or busbar sends it later with {@link sendPuback} (`'hold'`). QoS 0 and 2 are left to mqtt.js.
 *
 * `gate`, when it returns a promise, stops the connection reading further packets until it settles: mqtt.js
 * handles one packet at a time and reads on only once `handleMessage` calls back (its documented
 * back-pressure), so the socket fills and TCP holds the broker back. Everything the connection receives
 * waits meanwhile (SUBACKs, PINGRESPs: a wait past the keepalive ends the connection).
 */
export function takeOverPubacks(
  client: MqttClient,
  decide: (packet: IPublishPacket) => 'ack' | 'hold',
  gate?: () => Promise<void> | undefined,
): void {
  client.handleMessage = (packet, callback) => {
    const hold = decide(packet) === 'hold' && packet.qos === 1;
    const done = () => (hold ? callback(HOLD) : callback());
    const wait = gate?.();
    if (wait === undefined) done();
    else void wait.then(done, done);
  };
}

/** mqtt.js's internal writer: the only way to send a PUBACK after `handleMessage` called back. */
interface PacketWriter {
  _sendPacket(packet: { cmd: 'puback'; messageId: number }, cb?: () => void): void;
}

/**
 * Writes the PUBACK of a held message on the current connection (the caller checks `client.connected`:
 * offline, mqtt.js would store the packet and write it to a later connection, where the id means nothing).
 * Returns whether the socket took it without back-pressure; when false, wait for the stream's 'drain' (or
 * the connection's end, after which it does not matter).
 */
export function sendPuback(client: MqttClient, messageId: number): boolean {
  let written = false;
  // mqtt.js calls back synchronously when the socket's write returned true, else on 'drain'.
  (client as unknown as PacketWriter)._sendPacket({ cmd: 'puback', messageId }, () => {
    written = true;
  });
  return written;
}

/**
 * Corks the connection's socket until the end of this turn, so PUBACKs settled together leave in one write.
 * Relies on mqtt.js writing packets synchronously to `client.stream` (a Node stream on TCP, TLS and
 * websockets); a stream without `cork` is left alone.
 */
export function corkThisTurn(client: MqttClient): void {
  const stream = client.stream as { cork?: () => void; uncork?: () => void } | undefined;
  if (!stream?.cork) return;
  stream.cork();
  queueMicrotask(() => stream.uncork?.());
}

/**
 * Drops an unacknowledged outgoing QoS 1/2 message from mqtt.js's store so it is never re-sent, failing its
 * publish callback with `error` instead of mqtt.js's generic 'Message removed'. Relies on mqtt.js keeping
 * the callback in `client.outgoing[id].cb` and calling it from `removeOutgoingMessage`. Returns false when
 * mqtt.js no longer holds the message.
 */
export function giveUpOutgoing(client: MqttClient, messageId: number, error: Error): boolean {
  const entry = client.outgoing[messageId];
  if (entry === undefined) return false;
  const { cb } = entry;
  entry.cb = () => cb(error);
  client.removeOutgoingMessage(messageId);
  return true;
}

/** mqtt.js's path for a QoS 1/2 packet on a live connection. */
interface StoreAndSend {
  outgoingStore: { put(packet: Packet, cb: (error?: Error) => void): unknown };
  _writePacket(packet: Packet, cb?: (error?: Error) => void): void;
  _storeAndSend(packet: Packet, cb: ((error?: Error) => void) | undefined, cbStorePut: () => void): void;
}

/**
 * Keeps a QoS 1 publish for re-sending without the deep copy mqtt.js makes of every one (rfdc: payload,
 * properties and their buffers; 4-13% of busbar's CPU per MQTT publish and request in paired profile runs). mqtt.js copies
 * so that topic-alias rewriting of the packet it writes cannot reach the one it keeps; a client that assigns
 * no topic aliases (busbar's: it sets none and turns on neither automatic mode) leaves the packet unchanged,
 * and nothing else holds it. Relies on mqtt.js 5.16 `_storeAndSend(packet, cb, cbStorePut)`: put into
 * `outgoingStore`, then `cbStorePut()` and `_writePacket(packet, cb)`, as the original does after its copy.
 * Returns false (and changes nothing) for a client configured to use topic aliases.
 */
export function storeWithoutCopy(client: MqttClient): boolean {
  const { autoUseTopicAlias, autoAssignTopicAlias } = client.options;
  if (autoUseTopicAlias || autoAssignTopicAlias) return false;
  const c = client as unknown as StoreAndSend;
  c._storeAndSend = (packet, cb, cbStorePut) => {
    c.outgoingStore.put(packet, (error) => {
      if (error) {
        cb?.(error);
        return;
      }
      cbStorePut();
      c._writePacket(packet, cb);
    });
  };
  return true;
}

/** The part of mqtt-packet used below: mqtt.js' own copy of it (a dependency of mqtt, not of this package). */
type WriteToStream = (packet: Packet, stream: PacketChunks, options: object) => boolean;

/** mqtt-packet's `writeToStream`, as the installed mqtt.js resolves it. */
const writeToStream: WriteToStream = createRequire(createRequire(import.meta.url).resolve('mqtt'))(
  'mqtt-packet',
).writeToStream;

/**
 * A stream for mqtt-packet that keeps the chunks of one packet, to be written as one Buffer. mqtt-packet's
 * checks fail a packet through `destroy(error)`: thrown here, so the caller can hand the packet to mqtt.js's
 * own path, which fails the connection as it always did.
 */
class PacketChunks {
  readonly parts: (Buffer | string)[] = [];
  bytes = 0;
  write(chunk: Buffer | string): boolean {
    this.parts.push(chunk);
    this.bytes += typeof chunk === 'string' ? Buffer.byteLength(chunk) : chunk.length;
    return true;
  }
  destroy(error?: Error): void {
    throw error ?? new Error('mqtt-packet refused the packet');
  }
  concat(): Buffer {
    const out = Buffer.allocUnsafe(this.bytes);
    let at = 0;
    for (const part of this.parts) {
      at += typeof part === 'string' ? out.write(part, at) : part.copy(out, at);
    }
    return out;
  }
}

interface PacketStream {
  cork?(): void;
  uncork?(): void;
  write(chunk: Buffer): boolean;
  once(event: 'drain', listener: () => void): unknown;
}

interface PacketWriting {
  stream: PacketStream;
  options: object;
  noop: unknown;
  emit(event: 'packetsend', packet: Packet): boolean;
  _writePacket(packet: Packet, cb?: () => void): void;
}

/** The packet's chunks, or undefined when mqtt-packet refuses it. */
function joined(packet: Packet, options: object): PacketChunks | undefined {
  const chunks = new PacketChunks();
  try {
    writeToStream(packet, chunks, options);
    return chunks;
  } catch {
    return undefined;
  }
}

function uncork(stream: PacketStream): void {
  stream.uncork?.();
}

/** The packets of every message: written whole by {@link writePublishWhole}. */
const WHOLE = new Set<Packet['cmd']>(['publish', 'puback']);

/**
 * Writes each PUBLISH and PUBACK as one Buffer. mqtt-packet writes every field of a packet (each property: its
 * id, its length, its text) to the socket as a chunk of its own, corked into one `writev` of 15-20 chunks per
 * busbar publish; Node's stream and libuv pay per chunk, and the socket write was the largest share of an MQTT
 * publish's CPU (busbar writes two properties more per message than a bare client). The bytes are the same,
 * joined before the socket sees them: 5.3-8.0 -> 2.5-2.9 us per publish in a loopback micro-benchmark of
 * 1,000 per turn, 20-23 -> 17-19 us at one per turn. Relies on mqtt.js 5.16 `_writePacket(packet, cb)`: emit
 * `packetsend`, write, call back now or on `drain`, as the original does; every other packet takes that path.
 */
export function writePublishWhole(client: MqttClient): void {
  const c = client as unknown as PacketWriting;
  const original = c._writePacket;
  c._writePacket = function (this: PacketWriting, packet: Packet, cb?: () => void): void {
    const chunks = WHOLE.has(packet.cmd) ? joined(packet, this.options) : undefined;
    if (chunks === undefined) {
      original.call(this, packet, cb);
      return;
    }
    this.emit('packetsend', packet);
    const stream = this.stream;
    // As mqtt-packet does: the packets of one turn leave in one write.
    if (stream.cork) {
      stream.cork();
      process.nextTick(uncork, stream);
    }
    const written = stream.write(chunks.concat());
    if (!written && cb && cb !== this.noop) stream.once('drain', cb);
    else cb?.();
  };
}
