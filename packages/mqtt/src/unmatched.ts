import type { MqttClient, Packet } from 'mqtt';

/** MQTT 5 reason code of a PUBACK / PUBREC: accepted, but no subscription matched, so nobody gets the message. */
const NO_MATCHING_SUBSCRIBERS = 0x10;

/** The properties object busbar hands mqtt.js with each PUBLISH: unique per message, so it names the message. */
type Properties = object;

/**
 * Which confirmed publishes no subscription matched, shortly after this connection came back.
 *
 * Mosquitto 2.0 restores sessions from its persistence file but not their shared subscriptions: after a broker
 * restart a group has no subscription until a member reconnects and subscribes again, and a publisher that came
 * back first has its messages acknowledged (PUBACK 0x10) and dropped (without this, 4 and 195 of 10,000 in two
 * restart runs, all 0x10). So for `graceMs` after a reconnect the publisher sends such a message again
 * (see Publisher) until a subscription takes it; outside that window 0x10 is an ordinary answer (a topic
 * nobody subscribes to), and the publish resolves as before.
 *
 * mqtt.js treats 0x10 as success and does not pass the reason code to the publish callback; its public
 * `packetsend` / `packetreceive` events tell which packet id carried which message and how it was answered.
 */
export class UnmatchedPublishes {
  readonly #graceMs: number;
  /** Packet id -> the message's properties, for QoS 1/2 publishes awaiting their PUBACK / PUBREC. */
  readonly #sent = new Map<number, Properties>();
  readonly #unmatched = new WeakSet<Properties>();
  #connects = 0;
  #reconnectedAt = Number.NEGATIVE_INFINITY;

  constructor(client: MqttClient, graceMs: number) {
    this.#graceMs = graceMs;
    if (graceMs <= 0) return;
    client.on('packetsend', (packet: Packet) => {
      if (packet.cmd !== 'publish' || packet.qos === 0 || packet.messageId === undefined) return;
      if (packet.properties !== undefined) this.#sent.set(packet.messageId, packet.properties);
    });
    client.on('packetreceive', (packet: Packet) => {
      // The CONNACK, not the 'connect' event: mqtt.js re-sends unconfirmed publishes one at a time, each after
      // the previous one's PUBACK, and emits 'connect' only after the last.
      if (packet.cmd === 'connack' && ++this.#connects > 1) this.#reconnectedAt = Date.now();
      if ((packet.cmd !== 'puback' && packet.cmd !== 'pubrec') || packet.messageId === undefined) return;
      const properties = this.#sent.get(packet.messageId);
      if (properties === undefined) return;
      this.#sent.delete(packet.messageId);
      if (packet.reasonCode === NO_MATCHING_SUBSCRIBERS) this.#unmatched.add(properties);
    });
  }

  /** True (once) when the broker confirmed this message without a subscriber, within the grace after a reconnect. */
  takeResend(properties: Properties | undefined): boolean {
    if (properties === undefined || !this.#unmatched.has(properties)) return false;
    this.#unmatched.delete(properties);
    return Date.now() - this.#reconnectedAt < this.#graceMs;
  }
}
