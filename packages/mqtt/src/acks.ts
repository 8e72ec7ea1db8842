import type { IPublishPacket, MqttClient } from 'mqtt';
import { META } from './codec.js';
import type { Link } from './link.js';

/** One received QoS 1 message awaiting its PUBACK. */
export interface Inbound {
  readonly packet: IPublishPacket;
  readonly generation: number;
  /** Acked by core while we were offline: PUBACK it when the broker re-sends it. */
  ackedOffline: boolean;
}

/** mqtt.js's internal writer; the public API has no way to send a PUBACK later. */
interface PacketWriter {
  _sendPacket(packet: { cmd: 'puback'; messageId: number }, cb?: (error?: Error) => void): void;
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
  const value = props?.[META] ?? props?.['busbar-id'];
  return Array.isArray(value) ? value[0] : value;
}

/** Tells mqtt.js not to PUBACK now (its publish handler skips the PUBACK when `handleMessage` reports an error). */
const DEFER = new Error('busbar: PUBACK deferred until the handler settles');

/**
 * Ack-after-processing for MQTT 5: mqtt.js PUBACKs a QoS 1 message as soon as
 * its `handleMessage` hook calls back, and holding that callback would stall
 * every later packet of the connection (PUBACKs of our own publishes
 * included). So the hook defers the PUBACK and we send it ourselves once core
 * settles the delivery.
 *
 * Packet ids belong to the session: an ack made while offline is sent when the
 * broker re-sends that packet after a resumed session; if the session did not
 * survive, older deliveries can no longer be acked (the broker re-sends them,
 * or, for a clean session, they are gone).
 */
export class ManualAcks {
  readonly #link: Link;
  readonly #client: MqttClient;
  readonly #pending = new Map<number, Inbound>();
  #generation = 0;
  #bounceTimer: NodeJS.Timeout | undefined;
  #corked = false;
  /** False once stopped: further messages are neither delivered nor acked. */
  active = true;

  constructor(link: Link, onMessage: (packet: IPublishPacket, inbound: Inbound | undefined) => void) {
    this.#link = link;
    this.#client = link.client;
    link.onConnack = (sessionPresent) => {
      if (!sessionPresent) {
        this.#generation++;
        this.#pending.clear();
      }
    };
    this.#client.handleMessage = (packet, callback) => {
      if (packet.qos !== 1 || packet.messageId === undefined) {
        if (this.active) onMessage(packet, undefined);
        callback();
        return;
      }
      const id = packet.messageId;
      const known = this.#pending.get(id);
      if (known !== undefined && sameMessage(known.packet, packet)) {
        if (known.ackedOffline) {
          // The re-send of a message core already acked: PUBACK it now, do not deliver again.
          this.#pending.delete(id);
          callback();
        } else {
          // A re-send of a message still being processed: its PUBACK will follow.
          callback(DEFER);
        }
        return;
      }
      callback(DEFER);
      if (!this.active) return;
      const inbound: Inbound = { packet, generation: this.#generation, ackedOffline: false };
      this.#pending.set(id, inbound);
      onMessage(packet, inbound);
    };
  }

  get pending(): number {
    return this.#pending.size;
  }

  ack(inbound: Inbound): Promise<void> {
    const id = inbound.packet.messageId as number;
    if (inbound.generation !== this.#generation || this.#pending.get(id) !== inbound) return Promise.resolve();
    if (!this.#client.connected) {
      inbound.ackedOffline = true;
      return Promise.resolve();
    }
    this.#pending.delete(id);
    this.#cork();
    return new Promise<void>((resolve) => {
      // A PUBACK lost with the connection only means the broker re-sends: at least once either way.
      (this.#client as unknown as PacketWriter)._sendPacket({ cmd: 'puback', messageId: id }, () => resolve());
    });
  }

  /** PUBACKs settled in the same turn leave in one write. */
  #cork(): void {
    if (this.#corked) return;
    const stream = this.#client.stream as { cork?: () => void; uncork?: () => void } | undefined;
    if (!stream?.cork) return;
    this.#corked = true;
    stream.cork();
    queueMicrotask(() => {
      this.#corked = false;
      stream.uncork?.();
    });
  }

  /**
   * Leaves the message unacked. The broker re-sends it only when the session
   * resumes, so while the subscription keeps running we reconnect (debounced)
   * to get it back promptly.
   */
  release(inbound: Inbound, reconnect: boolean): void {
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
    if (this.#bounceTimer) clearTimeout(this.#bounceTimer);
    this.#bounceTimer = undefined;
  }
}
