import { HEADER } from '@busbar/core/transport';
import type { IPublishPacket, MqttClient } from 'mqtt';
import { corkThisTurn, sendPuback, takeOverPubacks } from './internals.js';
import type { Link } from './link.js';

/** One received message handed to core (QoS 1: awaiting its PUBACK), until core settles it. */
export interface Inbound {
  readonly packet: IPublishPacket;
  readonly generation: number;
  /** Acked by core while we were offline: PUBACK it when the broker re-sends it. */
  ackedOffline: boolean;
  /** Acked or released: no longer counted against the limit. */
  settled: boolean;
}

/**
 * Whether a packet that reuses a pending packet id is a re-send of the same message. The spec says
 * it must be, but Mosquitto restoring a session after a restart can renumber: never PUBACK (or
 * swallow) a different message on the strength of its packet id alone.
 */
function sameMessage(a: IPublishPacket, b: IPublishPacket): boolean {
  if (a.topic !== b.topic) return false;
  const pa = a.payload;
  const pb = b.payload;
  if (typeof pa === 'string' || typeof pb === 'string') return String(pa) === String(pb);
  return pa.equals(pb) && userProperty(a) === userProperty(b);
}

function userProperty(p: IPublishPacket): unknown {
  const props = p.properties?.userProperties;
  const value = props?.[HEADER.mqttMeta] ?? props?.[HEADER.id];
  return Array.isArray(value) ? value[0] : value;
}

/**
 * Ack-after-processing for MQTT 5: mqtt.js PUBACKs a QoS 1 message as soon as
 * its `handleMessage` hook calls back, and holding that callback would stall
 * every later packet of the connection (PUBACKs of our own publishes
 * included). So the hook withholds the PUBACK and we send it ourselves once
 * core settles the delivery (see internals.ts).
 *
 * Packet ids belong to the session: an ack made while offline is sent when the
 * broker re-sends that packet after a resumed session; if the session did not
 * survive, older deliveries can no longer be acked (the broker re-sends them,
 * or, for a clean session, they are gone).
 *
 * With a `limit`, at most that many messages are in core's hands at once: at the limit the connection stops
 * reading until one is settled. The broker should keep to our Receive Maximum, but Mosquitto 2.0 does not
 * once PUBACKs flow (measured: 918 unsettled against a Receive Maximum of 10), and QoS 0 has none. The check
 * follows each packet, so a new connection hands over its first packet even at the limit (one over, once):
 * waiting before it would deliver a packet of a connection that may be gone by then, whose packet id means
 * something else on the next one.
 */
export class ManualAcks {
  readonly #link: Link;
  readonly #client: MqttClient;
  readonly #pending = new Map<number, Inbound>();
  #generation = 0;
  #bounceTimer: NodeJS.Timeout | undefined;
  #corked = false;
  #drain: Promise<void> | undefined;
  readonly #limit: number | undefined;
  /** Messages handed to core and not settled yet. */
  #inHand = 0;
  #paused: Promise<void> | undefined;
  #resume: (() => void) | undefined;
  /** False once stopped: further messages are neither delivered nor acked. */
  active = true;

  constructor(link: Link, onMessage: (packet: IPublishPacket, inbound: Inbound) => void, limit?: number) {
    this.#link = link;
    this.#limit = limit;
    this.#client = link.client;
    link.onConnack = (sessionPresent) => {
      if (!sessionPresent) {
        this.#generation++;
        this.#pending.clear();
      }
    };
    takeOverPubacks(
      this.#client,
      (packet) => {
        if (packet.qos !== 1 || packet.messageId === undefined) {
          if (this.active) this.#hand(packet, onMessage);
          return 'ack';
        }
        const id = packet.messageId;
        const known = this.#pending.get(id);
        if (known !== undefined && sameMessage(known.packet, packet)) {
          // The re-send of a message core already acked: PUBACK it now, do not deliver again. Otherwise it is
          // still being processed and its PUBACK will follow.
          if (!known.ackedOffline) return 'hold';
          this.#pending.delete(id);
          return 'ack';
        }
        if (this.active) this.#hand(packet, onMessage);
        return 'hold';
      },
      () => this.#wait(),
    );
  }

  #hand(packet: IPublishPacket, onMessage: (packet: IPublishPacket, inbound: Inbound) => void): void {
    const inbound: Inbound = { packet, generation: this.#generation, ackedOffline: false, settled: false };
    // Registered before core sees it: core may settle it synchronously.
    if (packet.qos === 1 && packet.messageId !== undefined) this.#pending.set(packet.messageId, inbound);
    this.#inHand++;
    onMessage(packet, inbound);
  }

  /** While at the limit: a promise the connection waits on before it reads the next packet. */
  #wait(): Promise<void> | undefined {
    if (this.#limit === undefined || !this.active || this.#inHand < this.#limit) return undefined;
    this.#paused ??= new Promise<void>((resolve) => {
      this.#resume = resolve;
    });
    return this.#paused;
  }

  /** Counts `inbound` out of core's hands, once; reading resumes when below the limit. */
  #settle(inbound: Inbound): boolean {
    if (inbound.settled) return false;
    inbound.settled = true;
    this.#inHand--;
    this.#open();
    return true;
  }

  #open(): void {
    const resume = this.#resume;
    if (resume === undefined || (this.active && this.#limit !== undefined && this.#inHand >= this.#limit)) return;
    this.#resume = undefined;
    this.#paused = undefined;
    resume();
  }

  /** Messages in core's hands (QoS 0 included). */
  get inHand(): number {
    return this.#inHand;
  }

  get pending(): number {
    return this.#pending.size;
  }

  /** Sends the PUBACK; a promise only when the socket pushes back (no promise per message otherwise). */
  ack(inbound: Inbound): Promise<void> | undefined {
    if (!this.#settle(inbound) || inbound.packet.qos !== 1) return undefined;
    const id = inbound.packet.messageId as number;
    if (inbound.generation !== this.#generation || this.#pending.get(id) !== inbound) return undefined;
    if (!this.#client.connected) {
      inbound.ackedOffline = true;
      return undefined;
    }
    this.#pending.delete(id);
    this.#cork();
    // A PUBACK lost with the connection only means the broker re-sends: at least once either way.
    return sendPuback(this.#client, id) ? undefined : this.#writable();
  }

  /** Settles once the socket drains or the connection ends: a dead socket never drains. */
  #writable(): Promise<void> {
    this.#drain ??= new Promise<void>((resolve) => {
      const { stream } = this.#client;
      const done = () => {
        stream.off('drain', done);
        this.#client.off('close', done);
        this.#drain = undefined;
        resolve();
      };
      stream.once('drain', done);
      this.#client.once('close', done);
    });
    return this.#drain;
  }

  /** PUBACKs settled in the same turn leave in one write. */
  #cork(): void {
    if (this.#corked) return;
    this.#corked = true;
    corkThisTurn(this.#client);
    queueMicrotask(() => {
      this.#corked = false;
    });
  }

  /**
   * Leaves the message unacked. The broker re-sends it only when the session
   * resumes, so while the subscription keeps running we reconnect (debounced)
   * to get it back promptly.
   */
  release(inbound: Inbound, reconnect: boolean): void {
    if (!this.#settle(inbound) || inbound.packet.qos !== 1) return;
    const id = inbound.packet.messageId as number;
    if (inbound.generation !== this.#generation || this.#pending.get(id) !== inbound) return;
    this.#pending.delete(id);
    if (reconnect && this.active && this.#bounceTimer === undefined) {
      this.#bounceTimer = setTimeout(() => {
        this.#bounceTimer = undefined;
        if (this.active) this.#link.bounce();
      }, 200);
      this.#bounceTimer.unref();
    }
  }

  stop(): void {
    this.active = false;
    this.#open();
    if (this.#bounceTimer) clearTimeout(this.#bounceTimer);
    this.#bounceTimer = undefined;
  }
}
