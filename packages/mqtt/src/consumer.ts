import { randomUUID } from 'node:crypto';
import { ConnectionError, UnsupportedError } from '@busbar/core';
import type {
  SubscribeCallbacks,
  SubscribeSpec,
  TransportContext,
  TransportSubscription,
} from '@busbar/core/transport';
import { HEADER, MAX_TIMER_MS, numericHeader } from '@busbar/core/transport';
import type { IPublishPacket } from 'mqtt';
import { type Inbound, ManualAcks } from './acks.js';
import { type DecodedFields, decodeFields, headersOf } from './codec.js';
import { MqttDelivery, type RetrySink, retryProperties } from './delivery.js';
import { reasonText, toBusbarError } from './errors.js';
import { Link } from './link.js';
import type { MqttOptions } from './options.js';
import type { Publisher } from './publisher.js';
import { TopicMap } from './topics.js';

export interface ConsumerHost {
  readonly ctx: TransportContext<MqttOptions>;
  readonly map: TopicMap;
  readonly publisher: Publisher;
  /** Client id base of group members. */
  readonly base: string;
}

/** Member numbers in use in this process, per group session family: two buses here never share a client id. */
const members = new Map<string, Set<number>>();

export function memberFamily(base: string, group: string, topic: string): string {
  return `${base}:${group}:${topic}`;
}

/** Takes the lowest free member number of a family (`prefer` if it is free). */
export function takeMember(family: string, prefer?: number): number | undefined {
  let used = members.get(family);
  if (!used) {
    used = new Set();
    members.set(family, used);
  }
  if (prefer !== undefined) {
    if (used.has(prefer)) return undefined;
    used.add(prefer);
    return prefer;
  }
  let n = 0;
  while (used.has(n)) n++;
  used.add(n);
  return n;
}

export function freeMember(family: string, n: number): void {
  const used = members.get(family);
  used?.delete(n);
  if (used?.size === 0) members.delete(family);
}

/**
 * Retained messages: a group's shared subscription gets none (each member that joins would get the same one
 * again, with a fresh id each time, and run it: MQTT 5 says not to send them to shared subscriptions, and
 * Mosquitto 2.0 does), a broadcast subscription gets them when it is new (MQTT's "current state" meaning).
 */
function retainHandling(filter: string): 1 | 2 {
  return filter.startsWith('$share/') ? 2 : 1;
}

/** Subscribes `filter` at QoS 1 once, or throws typed: the broker's refusal (not retryable) or a lost connection. */
export async function subscribeOnce(link: Link, filter: string): Promise<void> {
  let code: number | undefined;
  try {
    code = (await link.client.subscribeAsync(filter, { qos: 1, rh: retainHandling(filter) }))[0]?.qos;
  } catch (error) {
    throw toBusbarError(error, { what: `Subscribing to '${filter}'`, op: 'consume', secrets: link.secrets });
  }
  if (code === undefined || code > 2) {
    throw new ConnectionError(`The MQTT broker refused the subscription to '${filter}': ${reasonText(code ?? 0x80)}`, {
      retryable: false,
    });
  }
}

export async function subscribeFilter(link: Link, filter: string, onError: (error: Error) => void): Promise<void> {
  await subscribeOnce(link, filter);
  // Subscribe again on every reconnect, even when the session was resumed: Mosquitto 2.0 restores
  // a persistent session after a restart but not its shared subscriptions.
  link.client.on('connect', () => {
    link.client.subscribe(filter, { qos: 1, rh: retainHandling(filter) }, (error, granted) => {
      const code = granted?.[0]?.qos;
      if (!error && code !== undefined && code <= 2) return;
      const what = `Subscribing again to '${filter}' after a reconnect failed`;
      // A refusal comes as an error carrying the SUBACK: toBusbarError names its reason code.
      onError(
        error
          ? toBusbarError(error, { what, op: 'consume', secrets: link.secrets })
          : new ConnectionError(`${what}: ${reasonText(code ?? 0x80)}`),
      );
    });
  });
}

/**
 * A group member is a persistent MQTT 5 session (clean start off, session
 * expiry, stable client id) with a shared subscription `$share/<group>/<path>`,
 * plus a second session on the group's retry topic. A broadcast subscription
 * is a clean session with a plain subscription.
 */
export async function openSubscription(
  host: ConsumerHost,
  spec: SubscribeSpec,
  callbacks: SubscribeCallbacks,
): Promise<TransportSubscription> {
  const { ctx, map, publisher } = host;
  const group = spec.group;
  const family = group === undefined ? undefined : memberFamily(host.base, group, spec.topic);
  const n = family === undefined ? 0 : (takeMember(family) as number);
  const clientId = family === undefined ? `${host.base}:bc:${randomUUID()}` : `${family}:${n}`;
  const links: Link[] = [];
  const retryTimers = new Set<NodeJS.Timeout>();

  const sink: RetrySink = {
    redeliverOnRelease: group !== undefined,
    retry: async (topic, path, fields, contentType, request) => {
      if (group === undefined) throw new UnsupportedError('Broadcast subscriptions retry in process');
      await publisher.publishRaw(
        map.retryPathOf(group, path),
        fields.body,
        retryProperties(topic, fields, request, Date.now()),
        contentType,
      );
    },
  };

  const deliver = (
    acks: ManualAcks,
    topic: string,
    headers: Record<string, string>,
    fields: DecodedFields,
    packet: IPublishPacket,
    inbound: Inbound,
  ) => {
    callbacks.onDelivery(new MqttDelivery(topic, headers, fields, packet, acks, inbound, sink));
  };

  const main = new Link(ctx, {
    clientId,
    clean: group === undefined,
    receiveMaximum: spec.prefetch,
    name: `subscriber ${spec.topic}${group ? ` (${group})` : ''}`,
  });
  links.push(main);
  const mainAcks: ManualAcks = new ManualAcks(
    main,
    (packet, inbound) => {
      const path = packet.topic;
      if (path.startsWith(map.retryHead) || path.startsWith(map.replyHead)) {
        // Another group's retry, or a reply to some requester, seen through a user wildcard: not a message of
        // this subscription.
        void mainAcks.ack(inbound);
        return;
      }
      const topic = map.fromPath(path) ?? path;
      const headers = headersOf(packet);
      deliver(mainAcks, topic, headers, decodeFields(headers, packet), packet, inbound);
    },
    spec.prefetch,
  );

  const acksList: ManualAcks[] = [mainAcks];
  try {
    await main.connect();
    await subscribeFilter(
      main,
      group === undefined ? map.toPath(spec.topic) : TopicMap.shared(group, map.toPath(spec.topic)),
      callbacks.onError,
    );
    if (group !== undefined) {
      const retryLink = new Link(ctx, {
        clientId: `${clientId}:retry`,
        clean: false,
        receiveMaximum: ctx.options.retryWindow,
        name: `retries ${spec.topic} (${group})`,
      });
      links.push(retryLink);
      const retryAcks: ManualAcks = new ManualAcks(
        retryLink,
        (packet, inbound) => {
          const headers = headersOf(packet);
          const topic = map.fromRetryPath(packet.topic, group) ?? headers[HEADER.topic] ?? packet.topic;
          const due = numericHeader(headers[HEADER.due], 0);
          delete headers[HEADER.due];
          const fields = decodeFields(headers, packet);
          // A longer timer would fire at once (Node's limit): no due time, foreign or not, makes a hot loop.
          const wait = Math.min(due - Date.now(), MAX_TIMER_MS);
          // Due (or no usable due time): now. Not a few ms early: "no earlier than the delay" (it was up to 5 ms).
          if (!(wait > 0)) return deliver(retryAcks, topic, headers, fields, packet, inbound);
          // Held unacked until due: if this process dies the broker still has it and re-sends it to the session.
          // One ms more: a timer may fire up to 1 ms early by Date.now().
          const timer = setTimeout(
            () => {
              retryTimers.delete(timer);
              if (retryAcks.active) deliver(retryAcks, topic, headers, fields, packet, inbound);
            },
            Math.min(wait + 1, MAX_TIMER_MS),
          );
          retryTimers.add(timer);
        },
        ctx.options.retryWindow,
      );
      await retryLink.connect();
      await subscribeFilter(retryLink, TopicMap.shared(group, map.retryPath(group, spec.topic)), callbacks.onError);
      acksList.push(retryAcks);
    }
  } catch (error) {
    await Promise.all(links.map((l) => l.close(false).catch(() => undefined)));
    if (family !== undefined) freeMember(family, n);
    throw error;
  }

  let closed = false;
  return {
    stop: async () => {
      for (const acks of acksList) acks.stop();
      for (const timer of retryTimers) clearTimeout(timer);
      retryTimers.clear();
    },
    close: async () => {
      if (closed) return;
      closed = true;
      for (const acks of acksList) acks.stop();
      await Promise.all(links.map((l) => l.close(true)));
      if (family !== undefined) freeMember(family, n);
    },
  };
}
