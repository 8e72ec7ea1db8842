import { createRequire } from 'node:module';
import { BusbarError } from '@busbar/core';
import { brokerAvailable, brokerUrls, createFaultProxy, sleep, uniqueName, waitFor } from '@busbar/testing';
import mqtt, { type IClientOptions, type IPublishPacket, type MqttClient, type Packet } from 'mqtt';
import { afterEach, describe, expect, it } from 'vitest';
import {
  checkMqttVersion,
  corkThisTurn,
  giveUpOutgoing,
  installedMqttVersion,
  sendPuback,
  storeWithoutCopy,
  TESTED_MQTT_RANGE,
  takeOverPubacks,
  writePublishWhole,
} from '../src/internals.js';

const ok = await brokerAvailable('mqtt');

describe('mqtt internals: version check', () => {
  it('accepts the tested mqtt.js versions, the installed one included', () => {
    const installed = (createRequire(import.meta.url)('mqtt/package.json') as { version: string }).version;
    expect(installedMqttVersion()).toBe(installed);
    expect(() => checkMqttVersion(installed)).not.toThrow();
    expect(() => checkMqttVersion('5.16.0')).not.toThrow();
    expect(() => checkMqttVersion('5.16.9')).not.toThrow();
  });

  it.each(['5.17.0', '5.15.1', '6.0.0', '4.3.8', 'unknown'])(
    'refuses mqtt %s with a ConfigError naming the range',
    (v) => {
      let error: unknown;
      try {
        checkMqttVersion(v);
      } catch (e) {
        error = e;
      }
      expect(BusbarError.is(error, 'BUSBAR_CONFIG'), String(error)).toBe(true);
      expect((error as Error).message).toContain(TESTED_MQTT_RANGE);
      expect((error as Error).message).toContain(`mqtt ${v} is installed`);
    },
  );
});

describe('mqtt internals: giving up an outgoing message', () => {
  it("fails the publish callback with busbar's error and drops the message from mqtt.js's store", async () => {
    // Never connected: the QoS 1 publish stays in mqtt.js's outgoing store.
    const client = mqtt.connect('mqtt://127.0.0.1:1', { protocolVersion: 5, manualConnect: true });
    // Never connected, it has no socket or timer to end (and mqtt.js's end() needs a socket).
    const outcome = new Promise<Error | undefined>((resolve) =>
      client.publish('t', 'x', { qos: 1 }, (error) => resolve(error)),
    );
    await sleep(10);
    const ids = Object.keys(client.outgoing).map(Number);
    expect(ids).toHaveLength(1);
    const mine = new Error('given up');
    expect(giveUpOutgoing(client, ids[0] as number, mine)).toBe(true);
    expect(await outcome).toBe(mine);
    expect(Object.keys(client.outgoing)).toHaveLength(0);
    expect(giveUpOutgoing(client, ids[0] as number, mine)).toBe(false);
  });
});

describe.runIf(ok)('mqtt internals: PUBACKs held until busbar sends them (real Mosquitto)', () => {
  const clients: MqttClient[] = [];
  afterEach(async () => {
    for (const c of clients.splice(0)) await c.endAsync(true).catch(() => undefined);
  });

  /** A persistent session of `clientId`, with `setup` run before the CONNECT goes out. */
  async function session(clientId: string, setup: (client: MqttClient) => void, extra: IClientOptions = {}) {
    const client = mqtt.connect(brokerUrls.mqtt, {
      protocolVersion: 5,
      clientId,
      clean: false,
      reconnectPeriod: 0,
      manualConnect: true,
      properties: { sessionExpiryInterval: 60 },
      ...extra,
    });
    clients.push(client);
    setup(client);
    const connack = new Promise<boolean>((resolve, reject) => {
      client.once('connect', (packet) => resolve(packet.sessionPresent));
      client.once('error', reject);
    });
    client.connect();
    return { client, sessionPresent: await connack };
  }

  it('a held message is not PUBACKed, later packets still flow, the broker re-sends it, and (corked) sendPuback settles it', async () => {
    const clientId = uniqueName('pin');
    const path = `pin/${uniqueName('t')}`;
    const publisher = await mqtt.connectAsync(brokerUrls.mqtt, { protocolVersion: 5 });
    clients.push(publisher);

    const pubacks: number[] = [];
    const first: IPublishPacket[] = [];
    const { client: c1 } = await session(clientId, (client) => {
      client.on('packetsend', (packet) => {
        if (packet.cmd === 'puback') pubacks.push(packet.messageId as number);
      });
      takeOverPubacks(client, (packet) => {
        first.push(packet);
        return 'hold';
      });
    });
    await c1.subscribeAsync(path, { qos: 1 });
    await publisher.publishAsync(path, 'a', { qos: 1 });
    await publisher.publishAsync(path, 'b', { qos: 1 });
    // The second arrives while the first is held: holding does not stall the connection.
    await waitFor(() => first.length === 2, 5_000, 'both messages');
    // Nor does it hold back our own publishes' PUBACKs (the connection reads on).
    await c1.publishAsync(`${path}/own`, 'x', { qos: 1 });
    expect(pubacks).toEqual([]);
    // Gone without acking: the session keeps both.
    c1.stream.destroy();
    await c1.endAsync(true);

    const again: IPublishPacket[] = [];
    const { client: c2, sessionPresent } = await session(clientId, (client) => {
      takeOverPubacks(client, (packet) => {
        again.push(packet);
        return 'hold';
      });
    });
    expect(sessionPresent).toBe(true);
    await waitFor(() => again.length === 2, 5_000, 'the re-sent messages');
    expect(again.map((p) => String(p.payload))).toEqual(['a', 'b']);
    // Corked: both PUBACKs leave in one write at the end of this turn, and still reach the broker.
    corkThisTurn(c2);
    for (const packet of again) expect(sendPuback(c2, packet.messageId as number)).toBe(true);
    // A QoS 1 round trip after the PUBACKs: the broker has read them (one TCP stream, in order).
    await c2.publishAsync(`${path}/own`, 'y', { qos: 1 });
    await c2.endAsync();

    const last: IPublishPacket[] = [];
    const { sessionPresent: resumed } = await session(
      clientId,
      (client) => {
        takeOverPubacks(client, (packet) => {
          last.push(packet);
          return 'ack';
        });
      },
      { properties: { sessionExpiryInterval: 0 } },
    );
    expect(resumed).toBe(true);
    await sleep(500);
    expect(last).toEqual([]);
  });

  it("'ack' lets mqtt.js PUBACK at once: the message does not come back", async () => {
    const clientId = uniqueName('pin-ack');
    const path = `pin/${uniqueName('t')}`;
    const publisher = await mqtt.connectAsync(brokerUrls.mqtt, { protocolVersion: 5 });
    clients.push(publisher);
    const pubacks: number[] = [];
    const got: IPublishPacket[] = [];
    const { client: c1 } = await session(clientId, (client) => {
      client.on('packetsend', (packet) => {
        if (packet.cmd === 'puback') pubacks.push(packet.messageId as number);
      });
      takeOverPubacks(client, (packet) => {
        got.push(packet);
        return 'ack';
      });
    });
    await c1.subscribeAsync(path, { qos: 1 });
    await publisher.publishAsync(path, 'a', { qos: 1 });
    await waitFor(() => pubacks.length === 1, 5_000, 'the PUBACK');
    expect(pubacks).toEqual([got[0]?.messageId]);
    await c1.endAsync();
    const back: IPublishPacket[] = [];
    await session(
      clientId,
      (client) => {
        takeOverPubacks(client, (packet) => {
          back.push(packet);
          return 'ack';
        });
      },
      { properties: { sessionExpiryInterval: 0 } },
    );
    await sleep(300);
    expect(back).toEqual([]);
  });
});

describe.runIf(ok)('mqtt internals: QoS 1 publishes kept without a copy (real Mosquitto)', () => {
  const clients: MqttClient[] = [];
  afterEach(async () => {
    for (const c of clients.splice(0)) await c.endAsync(true).catch(() => undefined);
  });

  /** The packets a client puts into its outgoing store and the ones it writes, in order. */
  function watch(client: MqttClient): { stored: Packet[]; written: Packet[] } {
    const stored: Packet[] = [];
    const written: Packet[] = [];
    const store = client.outgoingStore as unknown as { put(packet: Packet, cb: () => void): unknown };
    const put = store.put.bind(store);
    store.put = (packet, cb) => {
      stored.push(packet);
      return put(packet, cb);
    };
    client.on('packetsend', (packet) => {
      if (packet.cmd === 'publish') written.push(packet);
    });
    return { stored, written };
  }

  it('mqtt.js keeps a copy; with storeWithoutCopy the packet it keeps is the one it writes, until the PUBACK', async () => {
    const path = `pin/${uniqueName('copy')}`;
    const plain = await mqtt.connectAsync(brokerUrls.mqtt, { protocolVersion: 5 });
    const patched = await mqtt.connectAsync(brokerUrls.mqtt, { protocolVersion: 5 });
    clients.push(plain, patched);
    expect(storeWithoutCopy(patched)).toBe(true);
    const properties = { contentType: 'text/plain', userProperties: { busbar: '1 x' } };

    const before = watch(plain);
    const mine = Buffer.from('a');
    await plain.publishAsync(path, mine, { qos: 1, properties });
    // What the patch saves: unpatched, the kept packet is a deep copy (payload included).
    expect(before.stored).toHaveLength(1);
    expect(before.stored[0]).not.toBe(before.written[0]);
    expect((before.stored[0] as IPublishPacket).payload).not.toBe(mine);

    const after = watch(patched);
    const ours = Buffer.from('b');
    await patched.publishAsync(path, ours, { qos: 1, properties });
    expect(after.stored).toHaveLength(1);
    expect(after.stored[0]).toBe(after.written[0]);
    expect((after.stored[0] as IPublishPacket).payload).toBe(ours);
    expect((after.stored[0] as IPublishPacket).properties).toEqual(properties);
    // Acknowledged: nothing left to re-send.
    expect(Object.keys(patched.outgoing)).toHaveLength(0);
  });

  it('refuses a client that assigns topic aliases (there mqtt.js rewrites the packet it writes)', () => {
    const client = mqtt.connect('mqtt://127.0.0.1:1', {
      protocolVersion: 5,
      manualConnect: true,
      autoAssignTopicAlias: true,
    });
    const original = (client as unknown as { _storeAndSend: unknown })._storeAndSend;
    expect(storeWithoutCopy(client)).toBe(false);
    expect((client as unknown as { _storeAndSend: unknown })._storeAndSend).toBe(original);
  });

  it('a publish the broker never acknowledged is re-sent from the store after a reconnect and delivered', async () => {
    const path = `pin/${uniqueName('resend')}`;
    const proxy = await createFaultProxy({
      target: { host: '127.0.0.1', port: Number(new URL(brokerUrls.mqtt).port || 1883) },
    });
    try {
      const subscriber = await mqtt.connectAsync(brokerUrls.mqtt, { protocolVersion: 5 });
      clients.push(subscriber);
      const got: string[] = [];
      subscriber.on('message', (_topic, payload) => got.push(String(payload)));
      await subscriber.subscribeAsync(path, { qos: 1 });

      const client = await mqtt.connectAsync(proxy.url(brokerUrls.mqtt), {
        protocolVersion: 5,
        clientId: uniqueName('resend'),
        clean: false,
        properties: { sessionExpiryInterval: 30 },
        reconnectPeriod: 100,
      });
      clients.push(client);
      expect(storeWithoutCopy(client)).toBe(true);
      const seen = watch(client);
      // The PUBLISH goes nowhere: no PUBACK, the packet stays in the store.
      proxy.blackhole(true);
      let settled = false;
      const publish = client.publishAsync(path, 'kept', { qos: 1 }).finally(() => {
        settled = true;
      });
      await waitFor(() => seen.written.length === 1, 5_000, 'the first write');
      await sleep(200);
      expect(settled).toBe(false);
      expect(Object.keys(client.outgoing)).toHaveLength(1);
      proxy.blackhole(false);
      proxy.cutAll();
      await publish;
      // Written again on the new connection, the kept packet itself.
      expect(seen.written.length).toBeGreaterThanOrEqual(2);
      expect(seen.written.at(-1)).toBe(seen.stored[0]);
      await waitFor(() => got.includes('kept'), 5_000, 'the delivery');
    } finally {
      await proxy.close();
    }
  });
});

describe.runIf(ok)('mqtt internals: PUBLISH and PUBACK written as one Buffer (real Mosquitto)', () => {
  const clients: MqttClient[] = [];
  afterEach(async () => {
    for (const c of clients.splice(0)) await c.endAsync(true).catch(() => undefined);
  });
  const packets = createRequire(createRequire(import.meta.url).resolve('mqtt'))('mqtt-packet') as {
    generate(packet: Packet, options: object): Buffer;
  };

  /** Every chunk the client's socket is handed. */
  function chunksOf(client: MqttClient): unknown[] {
    const chunks: unknown[] = [];
    const stream = client.stream as unknown as { write(chunk: unknown, ...rest: unknown[]): boolean };
    const write = stream.write.bind(stream);
    stream.write = (chunk, ...rest) => {
      chunks.push(chunk);
      return write(chunk, ...rest);
    };
    return chunks;
  }

  it("hands the socket one chunk per packet, mqtt-packet's bytes, and the message arrives whole", async () => {
    const path = `pin/${uniqueName('whole')}`;
    const subscriber = await mqtt.connectAsync(brokerUrls.mqtt, { protocolVersion: 5 });
    const plain = await mqtt.connectAsync(brokerUrls.mqtt, { protocolVersion: 5 });
    const patched = await mqtt.connectAsync(brokerUrls.mqtt, { protocolVersion: 5 });
    clients.push(subscriber, plain, patched);
    const got: IPublishPacket[] = [];
    subscriber.on('message', (_topic, _payload, packet) => got.push(packet));
    await subscriber.subscribeAsync(path, { qos: 1 });
    const properties = { contentType: 'text/plain; charset=utf-8', userProperties: { busbar: '1 é-id' } };

    // What the patch changes: mqtt.js alone writes a PUBLISH as many chunks.
    const before = chunksOf(plain);
    await plain.publishAsync(path, 'plain', { qos: 1, properties });
    expect(before.length).toBeGreaterThan(8);

    writePublishWhole(patched);
    const sent: Packet[] = [];
    patched.on('packetsend', (packet) => sent.push(packet));
    const after = chunksOf(patched);
    await patched.publishAsync(path, 'whole', { qos: 1, properties });
    expect(sent.map((p) => p.cmd)).toEqual(['publish']);
    expect(after).toHaveLength(1);
    expect(after[0]).toEqual(packets.generate(sent[0] as Packet, { protocolVersion: 5 }));

    await waitFor(() => got.length === 2, 5_000, 'both deliveries');
    for (const [i, body] of ['plain', 'whole'].entries()) {
      expect(String(got[i]?.payload)).toBe(body);
      expect(got[i]?.properties).toMatchObject(properties);
    }
  });

  it('a PUBACK sent later (sendPuback) is one chunk too, written at once', async () => {
    const path = `pin/${uniqueName('whole-ack')}`;
    const receiver = await mqtt.connectAsync(brokerUrls.mqtt, { protocolVersion: 5 });
    const sender = await mqtt.connectAsync(brokerUrls.mqtt, { protocolVersion: 5 });
    clients.push(receiver, sender);
    writePublishWhole(receiver);
    const held: number[] = [];
    takeOverPubacks(receiver, (packet) => {
      held.push(packet.messageId as number);
      return 'hold';
    });
    await receiver.subscribeAsync(path, { qos: 1 });
    await sender.publishAsync(path, 'x', { qos: 1 });
    await waitFor(() => held.length === 1, 5_000, 'the delivery');
    const chunks = chunksOf(receiver);
    expect(sendPuback(receiver, held[0] as number)).toBe(true);
    expect(chunks).toEqual([packets.generate({ cmd: 'puback', messageId: held[0] as number }, { protocolVersion: 5 })]);
  });

  it("a packet mqtt-packet refuses takes mqtt.js's own path: the connection fails as it does unpatched", async () => {
    const path = `pin/${uniqueName('whole-bad')}`;
    const outcomes: string[] = [];
    for (const patch of [false, true]) {
      const client = await mqtt.connectAsync(brokerUrls.mqtt, { protocolVersion: 5, reconnectPeriod: 0 });
      clients.push(client);
      if (patch) writePublishWhole(client);
      const closed = new Promise<void>((resolve) => client.once('close', () => resolve()));
      // A content type that is no string: mqtt-packet destroys the socket with 'Invalid contentType'.
      client.publish(path, 'x', { qos: 1, properties: { contentType: 5 as unknown as string } });
      await closed;
      outcomes.push(`${client.connected}`);
    }
    expect(outcomes).toEqual(['false', 'false']);
    // The patched path still writes good packets on a new client.
    const again = await mqtt.connectAsync(brokerUrls.mqtt, { protocolVersion: 5 });
    clients.push(again);
    writePublishWhole(again);
    await expect(again.publishAsync(path, 'fine', { qos: 1 })).resolves.toBeDefined();
  });
});
