import net from 'node:net';

/**
 * Broker URLs for tests, from environment variables with this machine's
 * defaults (the same ports as docker-compose.yml and scripts/brokers).
 */
export const brokerUrls = {
  rabbitmq: process.env.BUSBAR_TEST_RABBITMQ_URL ?? 'amqp://guest:guest@127.0.0.1:5672',
  kafka: process.env.BUSBAR_TEST_KAFKA_URL ?? 'kafka://127.0.0.1:9092',
  nats: process.env.BUSBAR_TEST_NATS_URL ?? 'nats://127.0.0.1:4222',
  redis: process.env.BUSBAR_TEST_REDIS_URL ?? 'redis://127.0.0.1:6379',
  mqtt: process.env.BUSBAR_TEST_MQTT_URL ?? 'mqtt://127.0.0.1:1883',
  postgres: process.env.BUSBAR_TEST_POSTGRES_URL ?? 'postgres://postgres@127.0.0.1:5432/test',
} as const;

export type BrokerName = keyof typeof brokerUrls;

const defaultPorts: Record<string, number> = {
  amqp: 5672,
  amqps: 5671,
  kafka: 9092,
  nats: 4222,
  redis: 6379,
  rediss: 6380,
  mqtt: 1883,
  mqtts: 8883,
  postgres: 5432,
  postgresql: 5432,
};

/** True when something accepts TCP connections at the URL's (first) host:port within `timeoutMs`. */
export function reachable(url: string, timeoutMs = 2_000): Promise<boolean> {
  const parsed = new URL(url.split(',')[0] as string);
  const port = Number(parsed.port || defaultPorts[parsed.protocol.slice(0, -1)] || 0);
  const host = parsed.hostname || '127.0.0.1';
  return new Promise((resolve) => {
    const socket = net.connect({ host, port });
    const done = (ok: boolean) => {
      socket.destroy();
      resolve(ok);
    };
    socket.setTimeout(timeoutMs, () => done(false));
    socket.once('connect', () => done(true));
    socket.once('error', () => done(false));
  });
}

/**
 * Whether a broker's suites should run. In CI (`CI=true`) an unreachable
 * broker is a failure, never a skip; elsewhere the suite is skipped with a
 * printed reason. Use at the top of a test file:
 *
 * ```ts
 * const run = await brokerAvailable('rabbitmq');
 * describe.runIf(run)('rabbitmq', () => { ... });
 * ```
 */
export async function brokerAvailable(name: BrokerName): Promise<boolean> {
  const url = brokerUrls[name];
  if (await reachable(url)) return true;
  const where = url.replace(/\/\/[^@]*@/, '//');
  if (process.env.CI === 'true' || process.env.CI === '1') {
    throw new Error(`${name} is not reachable at ${where} and CI is set: start it with \`scripts/brokers up\``);
  }
  console.warn(`[busbar] skipping ${name} tests: nothing answers at ${where} (start it with \`scripts/brokers up\`)`);
  return false;
}

let counter = 0;

/** A topic/group name no other test (or earlier run) uses: `prefix.<random>.<n>` style, portable on every broker. */
export function uniqueName(prefix = 't'): string {
  counter++;
  return `${prefix}-${process.pid.toString(36)}${Date.now().toString(36)}${Math.floor(Math.random() * 1e6).toString(36)}-${counter}`;
}

/** Ports this process was given already: the OS may hand a just-released port out again at once. */
const given = new Set<number>();

/**
 * A TCP port on the loopback interface that nothing listens on right now (for a private broker or proxy), never
 * one this process got before: callers take several in a row before starting anything on them.
 */
export async function freePort(): Promise<number> {
  for (let tries = 0; ; tries++) {
    const port = await new Promise<number>((resolve, reject) => {
      const server = net.createServer();
      server.once('error', reject);
      server.listen(0, '127.0.0.1', () => {
        const { port } = server.address() as net.AddressInfo;
        server.close(() => resolve(port));
      });
    });
    if (!given.has(port) || tries >= 50) {
      given.add(port);
      return port;
    }
  }
}
