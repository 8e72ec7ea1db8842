import type { BusbarError } from '@busbar/core';
import type { TransportContext } from '@busbar/core/transport';
import { redactUrl, safeDecode } from '@busbar/core/transport';
import mqtt, { type IClientOptions, type IConnackPacket, type MqttClient, type Packet } from 'mqtt';
import { reasonText, toBusbarError } from './errors.js';
import { storeWithoutCopy, writePublishWhole } from './internals.js';
import type { MqttOptions } from './options.js';

/** Session expiry of persistent sessions: see the `sessionExpirySeconds` option. */
export function sessionExpiry(ctx: TransportContext<MqttOptions>): number {
  const { options } = ctx;
  if (options.sessionExpirySeconds !== undefined) return options.sessionExpirySeconds;
  return hasDefaultName(ctx) ? 300 : 86_400;
}

/** True when group sessions are named after the per-process default bus name. */
export function hasDefaultName(ctx: TransportContext<MqttOptions>): boolean {
  // Core's default bus name (a bus name, not a header: not in HEADER).
  return ctx.options.clientIdBase === undefined && ctx.bus.name === `busbar-${process.pid}`;
}

/** mqtt.js passes these on to Node's `tls.connect`. */
const noLog = (): void => {};

function tlsOptions(tls: NonNullable<MqttOptions['tls']>): IClientOptions {
  const { ca, cert, key, passphrase, servername, rejectUnauthorized = true } = tls;
  return {
    rejectUnauthorized,
    ...(ca !== undefined ? { ca } : {}),
    ...(passphrase !== undefined ? { passphrase } : {}),
    ...(cert !== undefined ? { cert } : {}),
    ...(key !== undefined ? { key } : {}),
    ...(servername !== undefined ? { servername } : {}),
  };
}

/** CONNACK reason codes after which reconnecting cannot help. */
const FATAL = new Set([0x84, 0x85, 0x86, 0x87, 0x8a, 0x8c]);

export interface LinkSpec {
  readonly clientId: string;
  /** Clean start; a persistent session (false) also gets the configured session expiry. */
  readonly clean: boolean;
  /** Unacked incoming QoS 1/2 messages the broker may send us at once. */
  readonly receiveMaximum: number;
  /** Name in `bus.health()`. */
  readonly name: string;
  readonly will?: IClientOptions['will'];
  /** Short-lived helper connection: not shown in `bus.health()`. */
  readonly quiet?: boolean;
  /** Session expiry of a persistent session, instead of the configured one. */
  readonly sessionExpirySeconds?: number;
  /** A graceful close ends the persistent session too (DISCONNECT with session expiry 0). */
  readonly endSessionOnClose?: boolean;
}

/**
 * One mqtt.js client with busbar's lifecycle: connect within the connect
 * timeout (failing fast on refused credentials), health reporting, and
 * reconnection by mqtt.js afterwards.
 */
export class Link {
  readonly client: MqttClient;
  readonly name: string;
  /** Called on every CONNACK with whether the broker resumed our session. */
  onConnack: ((sessionPresent: boolean) => void) | undefined;
  readonly #ctx: TransportContext<MqttOptions>;
  readonly #endSession: boolean;
  readonly #report: TransportContext<MqttOptions>['reportState'];
  #lastError: unknown;
  #takenOver = false;
  #closed = false;
  /** The last CONNACK's Maximum Packet Size: mqtt.js forgets it while reconnecting, when publishes still queue. */
  #maximumPacketSize: number | undefined;

  constructor(ctx: TransportContext<MqttOptions>, spec: LinkSpec) {
    this.#ctx = ctx;
    this.#endSession = spec.endSessionOnClose === true;
    this.name = spec.name;
    // An intentional close is not an outage: only unexpected ends are reported as down.
    const report: TransportContext<MqttOptions>['reportState'] = spec.quiet
      ? () => undefined
      : (name, state, error) => {
          if (!(this.#closed && state !== 'up')) ctx.reportState(name, state, error);
        };
    this.#report = report;
    const { url, options } = ctx;
    const password = url.password ? safeDecode(url.password) : options.password;
    const opts: IClientOptions = {
      protocolVersion: 5,
      clientId: spec.clientId,
      clean: spec.clean,
      keepalive: options.keepaliveSeconds,
      reconnectPeriod: options.reconnectPeriodMs,
      connectTimeout: ctx.bus.connectTimeoutMs,
      // Unacked publishes are kept by mqtt.js across reconnects and re-sent; QoS 0 ones too.
      queueQoSZero: true,
      // The consumer re-subscribes itself on every reconnect (see consumer.ts).
      resubscribe: false,
      manualConnect: true,
      // mqtt.js logs through `debug` about ten times per packet; with debug off each call still costs a lookup
      // (measured: 5% of a drain's CPU). Whoever turned DEBUG on keeps mqtt.js' own lines.
      ...(process.env.DEBUG ? {} : { log: noLog }),
      properties: {
        receiveMaximum: Math.max(1, Math.min(65_535, spec.receiveMaximum)),
        ...(spec.clean ? {} : { sessionExpiryInterval: spec.sessionExpirySeconds ?? sessionExpiry(ctx) }),
      },
      ...(url.username ? { username: safeDecode(url.username) } : {}),
      ...(password !== undefined ? { password } : {}),
      ...(spec.will ? { will: spec.will } : {}),
      ...(options.tls ? tlsOptions(options.tls) : {}),
    };
    // The URL without credentials: mqtt.js must not keep the password in a string it may print.
    const bare = new URL(url.href);
    bare.username = '';
    bare.password = '';
    // `mqtt://a:1883,b:1883`: mqtt.js fails over between the hosts.
    if (ctx.hosts.length > 1) {
      opts.servers = ctx.hosts.map((hostPort) => {
        const { hostname, port } = new URL(`${url.protocol}//${hostPort}`);
        return { host: hostname, port: Number(port || url.port || 1883) };
      });
    }
    this.client = mqtt.connect(bare.href, opts);
    storeWithoutCopy(this.client);
    writePublishWhole(this.client);
    this.client.on('connect', (packet: IConnackPacket) => {
      // PUBACKs are tiny: do not let Nagle hold them back.
      const socket = this.client.stream as { setNoDelay?: (on: boolean) => void } | undefined;
      socket?.setNoDelay?.(true);
      this.#maximumPacketSize = packet.properties?.maximumPacketSize;
      report(this.name, 'up');
      this.onConnack?.(packet.sessionPresent);
    });
    this.client.on('error', (error) => {
      this.#lastError = error;
      const code = (error as { code?: unknown }).code;
      if (typeof code === 'number' && FATAL.has(code)) {
        // Refused credentials or client id: reconnecting in a loop would only hammer the broker.
        report(this.name, 'down', this.#connectError(error));
        this.client.end(true);
      }
    });
    this.client.on('disconnect', (packet) => {
      this.#lastError = new Error(`The broker disconnected us: ${reasonText(packet.reasonCode)}`);
      if (packet.reasonCode === 0x8e && !this.#takenOver) {
        this.#takenOver = true;
        ctx.logger.warn(
          `MQTT client id '${spec.clientId}' was taken over by another connection: do two processes use the same bus name?`,
        );
      }
    });
    this.client.on('offline', () => {
      report(this.name, 'reconnecting', this.#lastError);
    });
    this.client.on('end', () => report(this.name, 'down'));
  }

  #connectError(error: unknown): BusbarError {
    const where = redactUrl(`${this.#ctx.url.protocol}//${this.#ctx.url.host}`);
    return toBusbarError(error, {
      what: `Cannot connect to MQTT broker ${where}`,
      op: 'connect',
      secrets: this.#ctx.secrets,
    });
  }

  /** Connects, or rejects with a redacted `ConnectionError` within the connect timeout. */
  connect(): Promise<void> {
    const { client } = this;
    this.#report(this.name, 'connecting');
    return new Promise<void>((resolve, reject) => {
      const done = (error?: unknown) => {
        clearTimeout(timer);
        client.off('connect', onConnect);
        client.off('error', onError);
        client.off('end', onEnd);
        client.off('packetreceive', onPacket);
        if (error === undefined) return resolve();
        this.#abandon();
        reject(error);
      };
      const onConnect = () => done();
      const onError = (error: Error) => {
        // Refused credentials, or a certificate either side refuses, fail the same way on every attempt: fail
        // now rather than reconnect until the connect timeout.
        const mapped = this.#connectError(error);
        const code = (error as { code?: unknown }).code;
        if ((typeof code === 'number' && FATAL.has(code)) || !mapped.retryable) done(mapped);
      };
      // A broker's first packet is its CONNACK: anything else (bytes of another protocol that happen to parse)
      // is a peer that will not become an MQTT broker by being asked again.
      const onPacket = (packet: Packet) => {
        if (packet.cmd !== 'connack' && packet.cmd !== 'auth') {
          done(this.#connectError(new Error(`Invalid packet: a ${packet.cmd} packet came before any CONNACK`)));
        }
      };
      const onEnd = () => done(this.#connectError(this.#lastError ?? 'closed'));
      const timer = setTimeout(() => {
        const reason = this.#lastError ?? `no CONNACK within ${this.#ctx.bus.connectTimeoutMs} ms`;
        done(this.#connectError(reason));
      }, this.#ctx.bus.connectTimeoutMs);
      client.on('connect', onConnect);
      client.on('error', onError);
      client.on('end', onEnd);
      client.on('packetreceive', onPacket);
      client.connect();
    });
  }

  /**
   * A connect that failed leaves nothing behind: mqtt.js, told to end while it is still connecting, would keep
   * its reconnect timer (a socket and a redial every period, and a process that cannot exit), so it is told not
   * to reconnect and its socket is dropped. The link counts as closed: its end is not an outage.
   */
  #abandon(): void {
    this.#closed = true;
    this.#ctx.forgetState?.(this.name);
    this.client.options.reconnectPeriod = 0;
    this.client.end(true);
    this.client.stream?.destroy();
  }

  /** Strings never to show in an error (the password). */
  get secrets(): readonly string[] {
    return this.#ctx.secrets;
  }

  /** The broker's Receive Maximum (how many unacked QoS 1/2 publishes it takes from us). */
  get serverReceiveMaximum(): number {
    return this.client.serverProperties?.receiveMaximum ?? 65_535;
  }

  /** The broker's Maximum Packet Size from the last CONNACK (Mosquitto: `max_packet_size`), if it set one. */
  get maximumPacketSize(): number | undefined {
    return this.client.serverProperties?.maximumPacketSize ?? this.#maximumPacketSize;
  }

  /**
   * Disconnects; `graceful` waits (at most `waitMs`, default min(publish timeout, 5 s)) for unacknowledged
   * outgoing messages first, but only while connected: nothing can be flushed to a broker that is not there.
   */
  async close(graceful: boolean, waitMs = Math.min(5_000, this.#ctx.bus.publishTimeoutMs)): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    const wait = graceful && this.client.connected ? Math.max(0, waitMs) : 0;
    await new Promise<void>((resolve) => {
      // A graceful end waits for acknowledgements a dead peer never sends. mqtt.js ignores a second end()
      // while the first is pending, so drop the socket ourselves: with the client disconnecting, mqtt.js
      // does not reconnect.
      const timer =
        wait > 0
          ? setTimeout(() => {
              this.client.stream?.destroy();
              resolve();
            }, wait)
          : undefined;
      const opts = this.#endSession ? { properties: { sessionExpiryInterval: 0 } } : {};
      this.client.end(wait === 0, opts, () => {
        clearTimeout(timer);
        resolve();
      });
    });
    // Closed on purpose (a subscription closed, or one whose subscribe failed): no longer a connection of the bus.
    this.#ctx.forgetState?.(this.name);
  }

  /** Drops the socket so mqtt.js reconnects and the broker re-sends what we left unacked. */
  bounce(): void {
    if (this.#closed || !this.client.connected) return;
    this.client.stream?.destroy();
  }
}
