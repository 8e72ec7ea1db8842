import { PublishError } from '@busbar/core';
import type { MqttClient, Packet } from 'mqtt';
import { giveUpOutgoing } from './internals.js';

/** Connections in a row that may end right after a message was (re)sent before that message is given up. */
export const MAX_STRIKES = 3;

/** A connection that ends this soon after a message was written may have been ended by that message. */
const SUSPECT_MS = 5_000;

/**
 * Bounds the re-sending of a message the broker answers by closing the connection (Mosquitto does that for
 * a malformed or oversize packet instead of refusing it). mqtt.js keeps every unacknowledged QoS 1/2 packet
 * and re-sends it, one at a time, after each reconnect: such a packet would be re-sent forever and every
 * later publish would wait behind it. A message that was written on each of {@link MAX_STRIKES} connections
 * that then closed (shortly after, without acknowledging it) is removed from mqtt.js's store, and its
 * publish fails with a non-retryable `PublishError`; later messages are then re-sent and flow again.
 *
 * A network outage can strike a message too, but it takes three connections lost in a row with the same
 * message unacknowledged: mqtt.js re-sends one stored message at a time, so each loss strikes at most one.
 */
export function guardAgainstPoison(client: MqttClient): void {
  /** Packet id -> when it was last written on the current connection. */
  const sent = new Map<number, number>();
  const strikes = new Map<number, number>();

  const strike = (id: number): void => {
    if (client.outgoing[id] === undefined) {
      strikes.delete(id);
      return;
    }
    const count = (strikes.get(id) ?? 0) + 1;
    if (count < MAX_STRIKES) {
      strikes.set(id, count);
      return;
    }
    strikes.delete(id);
    giveUpOutgoing(
      client,
      id,
      new PublishError(
        `The MQTT broker closed the connection each of the ${MAX_STRIKES} times this message was sent: it was given up (the broker will not take it)`,
        { retryable: false },
      ),
    );
  };

  client.on('packetsend', (packet: Packet) => {
    if (packet.cmd === 'publish' && packet.qos > 0 && packet.messageId !== undefined) {
      sent.set(packet.messageId, Date.now());
    }
  });
  client.on('packetreceive', (packet: Packet) => {
    if ((packet.cmd === 'puback' || packet.cmd === 'pubrec') && packet.messageId !== undefined) {
      sent.delete(packet.messageId);
      strikes.delete(packet.messageId);
    }
  });
  client.on('close', () => {
    const now = Date.now();
    const suspects: number[] = [];
    for (const [id, at] of sent) if (now - at <= SUSPECT_MS) suspects.push(id);
    sent.clear();
    // After mqtt.js's own 'close' handling (and before its reconnect timer): the removal must not race its
    // re-send loop, which stops once a reconnect is scheduled.
    setImmediate(() => {
      for (const id of suspects) strike(id);
    });
  });
}
