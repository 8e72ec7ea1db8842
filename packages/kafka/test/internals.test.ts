import net from 'node:net';
import tls from 'node:tls';
import { BusbarError, connect, silentLogger } from '@busbar/core';
import {
  brokerAvailable,
  brokerUrls,
  createTestPki,
  freePort,
  opensslAvailable,
  sleep,
  uniqueName,
} from '@busbar/testing';
import kafkajs, { type ISocketFactory } from 'kafkajs';
import { describe, expect, it } from 'vitest';
import { driver } from '../src/index.js';
import {
  type ConnectionState,
  checkKafkajsVersion,
  connectionClass,
  installedKafkajs,
  installKafkajsPatch,
  TESTED_KAFKAJS,
  UNTESTED_KAFKAJS_ENV,
} from '../src/internals.js';
import { SocketRegistry } from '../src/sockets.js';

const ok = await brokerAvailable('kafka');

const quiet = { debug() {}, info() {}, warn() {}, error() {} };
const logger = { ...quiet, namespace: () => quiet };

/** A kafkajs Connection as kafkajs' broker pool builds it. */
function connection(port: number, socketFactory: ISocketFactory): ConnectionState {
  const Connection = connectionClass();
  return new Connection({
    host: '127.0.0.1',
    port,
    logger,
    socketFactory,
    requestTimeout: 1_000,
    connectionTimeout: 500,
  });
}

/** kafkajs' default socket factory, as a plain kafkajs user has it. */
function plainFactory(): ISocketFactory {
  return ({ host, port, onConnect }) => net.connect({ host, port }, onConnect);
}

/** A receive buffer left from a frame cut in the middle (what a reconnect used to append to). */
function poison(c: ConnectionState): void {
  c.chunks = [Buffer.from([0, 0, 0, 9, 1])];
  c.bytesBuffered = 5;
  c.bytesNeeded = 13;
}

describe(`kafkajs internals busbar relies on (kafkajs ${TESTED_KAFKAJS})`, () => {
  it('the installed kafkajs is the tested one; another is refused with a ConfigError naming both, unless the env allows it', () => {
    expect(installedKafkajs).toBe(TESTED_KAFKAJS);
    expect(() => checkKafkajsVersion()).not.toThrow();
    let refused: unknown;
    try {
      checkKafkajsVersion('2.3.0', {});
    } catch (error) {
      refused = error;
    }
    expect(BusbarError.is(refused, 'BUSBAR_CONFIG')).toBe(true);
    expect((refused as Error).message).toContain('kafkajs 2.2.4');
    expect((refused as Error).message).toContain('kafkajs 2.3.0');
    expect((refused as Error).message).toContain(UNTESTED_KAFKAJS_ENV);
    expect(() => checkKafkajsVersion('2.3.0', { [UNTESTED_KAFKAJS_ENV]: '1' })).not.toThrow();
  });

  it('Connection keeps its receive buffer, socket factory and request queue in the fields the patch resets', () => {
    const factory = plainFactory();
    const c = connection(1, factory);
    expect(typeof connectionClass().prototype.connect).toBe('function');
    expect(c.chunks).toEqual([]);
    expect(c.bytesBuffered).toBe(0);
    // The 4-byte size prefix of every response frame.
    expect(c.bytesNeeded).toBe(4);
    expect(c.socketFactory).toBe(factory);
    expect(typeof c.isConnected).toBe('function');
    const queue = c.requestQueue;
    expect(queue.pending).toEqual([]);
    expect(queue.throttledUntil).toBe(-1);
    expect(queue.throttleCheckTimeoutId).toBeNull();
    expect(typeof queue.checkPendingRequests).toBe('function');
    expect(Object.hasOwn(queue, 'scheduleCheckPendingRequests')).toBe(false);
  });

  it("kafkajs' own request queue arms a timer with a negative delay when idle (why the patch replaces it)", () => {
    const queue = connection(1, plainFactory()).requestQueue;
    const seen: unknown[] = [];
    const original = globalThis.setTimeout;
    globalThis.setTimeout = ((_fn: () => void, ms?: number) => {
      seen.push(ms);
      return original(() => undefined, 0);
    }) as typeof setTimeout;
    try {
      queue.scheduleCheckPendingRequests();
    } finally {
      globalThis.setTimeout = original;
    }
    expect(seen).toHaveLength(1);
    expect(seen[0] as number).toBeLessThan(0);
  });

  it("a connection made through a plain socket factory is left to kafkajs as it is; one through busbar's is patched", async () => {
    installKafkajsPatch();
    const port = await freePort();
    const plain = connection(port, plainFactory());
    poison(plain);
    await expect(plain.connect()).rejects.toThrow();
    // kafkajs' own connect: the stale buffer stays, the queue keeps kafkajs' scheduler.
    expect(plain.bytesBuffered).toBe(5);
    expect(plain.chunks).toHaveLength(1);
    expect(Object.hasOwn(plain.requestQueue, 'scheduleCheckPendingRequests')).toBe(false);

    const sockets = new SocketRegistry();
    const ours = connection(port, sockets.factory);
    poison(ours);
    await expect(ours.connect()).rejects.toThrow();
    expect(ours.bytesBuffered).toBe(0);
    expect(ours.chunks).toEqual([]);
    expect(ours.bytesNeeded).toBe(4);
    expect(Object.hasOwn(ours.requestQueue, 'scheduleCheckPendingRequests')).toBe(true);

    // A closed transport's connections fail at once, without retry; a plain one still tries the network.
    sockets.shutdown();
    const closed = await ours.connect().catch((error: unknown) => error);
    expect((closed as Error).name).toBe('KafkaJSNonRetriableError');
    const other = await plain.connect().catch((error: unknown) => error);
    expect((other as Error).name).toBe('KafkaJSConnectionError');
  });
});

describe.runIf(opensslAvailable())('kafkajs internals: TLS verification failures', () => {
  it("through busbar's sockets a certificate that fails verification is not retried; kafkajs alone retries it", async () => {
    installKafkajsPatch();
    const pki = createTestPki();
    const server = tls.createServer({ cert: pki.pem(pki.server.cert), key: pki.pem(pki.server.key) }, (s) => s.end());
    server.on('tlsClientError', () => undefined);
    const port = await freePort();
    await new Promise<void>((resolve) => server.listen(port, '127.0.0.1', resolve));
    const sockets = new SocketRegistry();
    try {
      const ssl = { ca: pki.pem(pki.otherCa) };
      const tlsFactory: ISocketFactory = ({ host, port: p, onConnect }) =>
        tls.connect({ host, port: p, ...ssl }, onConnect);
      const Connection = connectionClass();
      const make = (socketFactory: ISocketFactory) =>
        new Connection({
          host: '127.0.0.1',
          port,
          logger,
          socketFactory,
          ssl,
          requestTimeout: 1_000,
          connectionTimeout: 2_000,
        });
      const ours = await make(sockets.factory)
        .connect()
        .catch((error: unknown) => error);
      expect((ours as Error).name).toBe('KafkaJSNonRetriableError');
      expect((ours as { retriable: boolean }).retriable).toBe(false);
      expect((ours as { code: string }).code).toMatch(/^(UNABLE_TO_VERIFY_LEAF_SIGNATURE|UNABLE_TO_GET_ISSUER_CERT)/);
      const plain = await make(tlsFactory)
        .connect()
        .catch((error: unknown) => error);
      expect((plain as Error).name).toBe('KafkaJSConnectionError');
      expect((plain as { retriable: boolean }).retriable).toBe(true);
    } finally {
      sockets.shutdown();
      await new Promise((resolve) => server.close(resolve));
      pki.remove();
    }
  });
});

describe.runIf(ok)('kafkajs internals against the broker', () => {
  it('an idle consumer emits no TimeoutNegativeWarning and spins no timer (kafkajs#1751)', async () => {
    const warnings: string[] = [];
    const onWarning = (warning: Error) => warnings.push(warning.name);
    process.on('warning', onWarning);
    const bus = await connect({ url: brokerUrls.kafka, driver, logger: silentLogger });
    try {
      const topic = uniqueName('idle');
      await bus.subscribe(topic, async () => undefined, { group: uniqueName('g') });
      await bus.publish(topic, 'wake');
      await sleep(500);
      const cpu = process.cpuUsage();
      const started = performance.now();
      await sleep(3_000);
      const used = process.cpuUsage(cpu);
      const share = (used.user + used.system) / 1_000 / (performance.now() - started);
      console.log(`[kafka idle] one subscription: ${(share * 100).toFixed(2)}% of a core`);
      expect(warnings).not.toContain('TimeoutNegativeWarning');
      // Measured here: about 4% of a core with the 1 ms timer per connection, 1.5% without.
      expect(share).toBeLessThan(0.03);
    } finally {
      process.off('warning', onWarning);
      await bus.close();
    }
  }, 30_000);

  it('a plain kafkajs client next to a busbar bus works as kafkajs does', async () => {
    const bus = await connect({ url: brokerUrls.kafka, driver, logger: silentLogger });
    const kafka = new kafkajs.Kafka({ brokers: [new URL(brokerUrls.kafka).host], logLevel: kafkajs.logLevel.NOTHING });
    const admin = kafka.admin();
    try {
      const topic = uniqueName('plain');
      await bus.publish(topic, 'x');
      await admin.connect();
      expect(await admin.listTopics()).toContain(topic);
    } finally {
      await admin.disconnect();
      await bus.close();
    }
  }, 30_000);
});
