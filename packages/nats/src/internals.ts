import { createRequire } from 'node:module';
import { ConfigError } from '@busbar/core';
import type { JsMsg, Msg, MsgHdrs } from 'nats';

/**
 * Everything busbar reads from nats.js that is not its documented API lives here, behind a check of the
 * installed client's version; test/internals.test.ts pins each relied-on shape against a real server. Each
 * reader returns undefined when the shape is not the expected one, and its caller falls back to the public
 * API (slower, same result), so a client that changed its internals is slower, never wrong.
 */

/** The nats.js versions these internals were checked against (the lower bound is the one tested). */
export const TESTED_NATS = { from: '2.29.3', below: '2.30.0' } as const;

/** Throws a ConfigError when `version` is outside {@link TESTED_NATS}; exported for its test. */
export function checkClientVersion(version: unknown): void {
  const v = typeof version === 'string' ? parse(version) : undefined;
  if (v !== undefined && compare(v, parse(TESTED_NATS.from)) >= 0 && compare(v, parse(TESTED_NATS.below)) < 0) return;
  throw new ConfigError(
    `@busbar/nats is tested with the 'nats' client >=${TESTED_NATS.from} <${TESTED_NATS.below}, ` +
      (typeof version === 'string'
        ? `but ${version} is installed: install a version in that range`
        : "but the installed client's version could not be read from its package.json"),
  );
}

function parse(version: string): readonly number[] | undefined {
  const m = /^(\d+)\.(\d+)\.(\d+)/.exec(version);
  return m ? [Number(m[1]), Number(m[2]), Number(m[3])] : undefined;
}

function compare(a: readonly number[] | undefined, b: readonly number[] | undefined): number {
  for (let i = 0; i < 3; i++) {
    const d = (a?.[i] ?? 0) - (b?.[i] ?? 0);
    if (d !== 0) return d;
  }
  return 0;
}

/** The installed client's version, from its package.json (the package has no `exports` map to hide it). */
export function installedClientVersion(): unknown {
  try {
    return (createRequire(import.meta.url)('nats/package.json') as { version?: unknown }).version;
  } catch {
    return undefined;
  }
}

checkClientVersion(installedClientVersion());

/** nats.js' `MsgImpl`: `_rdata` is header block + body, `_msg.hdr` the block's length (-1: none). */
interface MsgImplInternals {
  readonly _msg?: { readonly hdr?: unknown };
  readonly _rdata?: unknown;
}

/** A JetStream message wraps a `MsgImpl` as `msg`. */
interface JsMsgInternals {
  readonly msg?: MsgImplInternals;
}

function blockOf(impl: MsgImplInternals | undefined): string | undefined {
  const hdr = impl?._msg?.hdr;
  const data = impl?._rdata;
  if (typeof hdr !== 'number' || !(data instanceof Uint8Array)) return undefined;
  if (hdr <= 0) return '';
  if (hdr > data.byteLength) return undefined;
  return Buffer.from(data.buffer, data.byteOffset, hdr).toString('utf8');
}

/**
 * The raw `NATS/1.0\r\nName: value\r\n...` block of a JetStream message, '' when it has none. Parsing it
 * directly skips nats.js' per-header validation and canonicalization: measured at about a third of busbar's
 * NATS consume time. Undefined when the shape is not the expected one (then `m.headers` is read instead).
 */
export function headerBlock(m: JsMsg): string | undefined {
  return blockOf((m as unknown as JsMsgInternals).msg);
}

/** The same for a core NATS message (a request, a reply): '' when it has none, undefined on another shape. */
export function msgHeaderBlock(m: Msg): string | undefined {
  return blockOf(m as unknown as MsgImplInternals);
}

/**
 * A header block nats.js sends as it is. `nc.publish` (protocol.js `publish`) reads nothing of
 * `options.headers` but its `encode()`: building the block as one string skips nats.js' per-header
 * canonicalization, validation and `Map` of arrays (about a tenth of a request/reply round trip's CPU). The
 * caller validates names and values (codec.ts). Only for `nc.publish`: JetStream's `js.publish` calls `set()`.
 */
export function encodedHeaders(block: string): MsgHdrs {
  // Buffer.from: several times faster than TextEncoder for a header block's size (see core's codec.ts).
  return { encode: () => Buffer.from(block, 'utf8') } as unknown as MsgHdrs;
}

/**
 * The ack subject of a JetStream message (`$JS.ACK...`), which nats.js keeps as `reply` but leaves out of
 * its `JsMsg` type. Reading the few delivery facts busbar needs from it beats building `m.info` per
 * message (measured); undefined when it is not there (then `m.info` is used).
 */
export function ackSubject(m: JsMsg): string | undefined {
  const reply = (m as unknown as { readonly reply?: unknown }).reply;
  return typeof reply === 'string' && reply.startsWith('$JS.ACK.') ? reply : undefined;
}

/** The connection option that turns on {@link installFailFastDial} for one connection (busbar's own only). */
export const FAIL_FAST_DIAL = 'busbarFailFastDial';

/** The parts of nats.js' `ProtocolHandler` the fail-fast dial reads. */
interface ProtocolInternals {
  connectError?: ((error: unknown) => void) | undefined;
  lastError?: unknown;
  options?: Record<string, unknown>;
}

type Disconnected = (this: ProtocolInternals, error: unknown) => Promise<void>;

const PATCHED = Symbol.for('busbar.nats.failFastDial');

/**
 * A server that closes the connection while the client is still dialling (a TLS 1.3 server refusing the
 * client certificate after the handshake, a `-ERR` followed by a close) leaves nats.js 2.29 waiting for a PONG
 * that never comes: the dial fails only at its timeout, as `TIMEOUT`, and the cause (the TLS alert) is lost.
 * This makes `ProtocolHandler.disconnected` fail the waiting dial at once with the socket's error (or the
 * server's last `-ERR`); nats.js then tries the next server as after any failed dial. Only connections that
 * carry {@link FAIL_FAST_DIAL} are affected, so other nats.js users in the process see no change. False when
 * the shape is not the expected one (then such a dial fails at its timeout, as before).
 */
export function installFailFastDial(): boolean {
  const proto = clientPrototype('nats/lib/nats-base-client/protocol.js', 'ProtocolHandler');
  if (proto === undefined || typeof proto.disconnected !== 'function') return false;
  if (proto[PATCHED] === true) return true;
  const original = proto.disconnected as Disconnected;
  const patched: Disconnected = function (this: ProtocolInternals, error: unknown) {
    const fail = this.connectError;
    if (this.options?.[FAIL_FAST_DIAL] === true && typeof fail === 'function') {
      this.connectError = undefined;
      fail(error ?? this.lastError ?? closedWhileDialling());
    }
    return original.call(this, error);
  };
  proto.disconnected = patched;
  proto[PATCHED] = true;
  installDialCleanup();
  return true;
}

const CLEANUP_PATCHED = Symbol.for('busbar.nats.dialCleanup');

interface TransportInternals {
  connected?: boolean;
  socket?: { destroy(): void; removeAllListeners(): void };
  options?: Record<string, unknown>;
}

/**
 * nats.js 2.29 closes a transport whose dial failed (a server that accepted TCP and never sent INFO: the dial's
 * timeout) with a `close()` that does nothing unless the connection was up: the socket stays open, one per
 * failed `connect()` (found with a fault proxy). This drops it, for connections that carry FAIL_FAST_DIAL only.
 */
function installDialCleanup(): void {
  const proto = clientPrototype('nats/lib/src/node_transport.js', 'NodeTransport');
  if (proto === undefined || typeof proto.close !== 'function' || proto[CLEANUP_PATCHED] === true) return;
  const original = proto.close as (this: TransportInternals, error?: unknown) => Promise<void>;
  proto.close = function (this: TransportInternals, error?: unknown) {
    if (!this.connected && this.socket !== undefined && this.options?.[FAIL_FAST_DIAL] === true) {
      this.socket.removeAllListeners();
      this.socket.destroy();
      this.socket = undefined;
    }
    return original.call(this, error);
  };
  proto[CLEANUP_PATCHED] = true;
}

function closedWhileDialling(): Error {
  return Object.assign(new Error('the server closed the connection before it was ready'), { code: 'DISCONNECT' });
}

/** The prototype of class `name` in one of nats.js' own modules; undefined when the module or class moved. */
function clientPrototype(path: string, name: string): Record<string | symbol, unknown> | undefined {
  try {
    const mod = createRequire(import.meta.url)(path) as Record<
      string,
      { prototype?: Record<string | symbol, unknown> }
    >;
    return mod[name]?.prototype;
  } catch {
    return undefined;
  }
}
