import { createRequire } from 'node:module';
import { ConfigError } from '@busbar/core';
import type { JsMsg } from 'nats';

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

/** nats.js' `MsgImpl` as a JetStream message wraps it: `_rdata` is header block + body, `_msg.hdr` the block's length. */
interface MsgInternals {
  readonly msg?: { readonly _msg?: { readonly hdr?: unknown }; readonly _rdata?: unknown };
}

/**
 * The raw `NATS/1.0\r\nName: value\r\n...` block of a JetStream message, '' when it has none. Parsing it
 * directly skips nats.js' per-header validation and canonicalization: measured at about a third of busbar's
 * NATS consume time. Undefined when the shape is not the expected one (then `m.headers` is read instead).
 */
export function headerBlock(m: JsMsg): string | undefined {
  const impl = (m as unknown as MsgInternals).msg;
  const hdr = impl?._msg?.hdr;
  const data = impl?._rdata;
  if (typeof hdr !== 'number' || !(data instanceof Uint8Array)) return undefined;
  if (hdr <= 0) return '';
  if (hdr > data.byteLength) return undefined;
  return Buffer.from(data.buffer, data.byteOffset, hdr).toString('utf8');
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
