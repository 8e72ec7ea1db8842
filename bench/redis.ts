import { driver } from '@busbar/redis';
import { Redis } from 'ioredis';
import { busbarSide } from './lib/busbar-side.js';
import type { BrokerBench, Running, Side, Target } from './lib/types.js';
import { BATCH, PREFETCH, pool, uniqueGroup, uniqueTopic, WINDOW } from './lib/util.js';
import { rawRedisRequestReply } from './redis-rr.js';

const url = process.env.BUSBAR_BENCH_REDIS_URL ?? 'redis://127.0.0.1:6379';
/** Entries per pipeline on the raw side (PERFORMANCE.md: pipelines of 100). */
const PIPELINE = 100;

function client(blocking = false): Redis {
  // Auto-pipelining for the raw publisher (concurrent XADDs become one write), never on a blocking reader.
  return new Redis(url, { enableAutoPipelining: !blocking, lazyConnect: false, maxRetriesPerRequest: 3 });
}

const key = (topic: string) => `rawbench:{${topic}}`;

async function deleteKeys(redis: Redis, pattern: string): Promise<void> {
  let cursor = '0';
  do {
    const [next, keys] = await redis.scan(cursor, 'MATCH', pattern, 'COUNT', 1000);
    cursor = next;
    if (keys.length > 0) await redis.del(...keys);
  } while (cursor !== '0');
}

/**
 * A group reader: XREADGROUP COUNT `size` in a loop, each read handed to `onRead` and acked with ONE XACK (not
 * awaited before the next read). The consume test reads PREFETCH at a time, the batch test a batch at a time.
 */
async function readGroup(
  redis: Redis,
  target: Target,
  count: number,
  size: number,
  onRead: (bodies: readonly Buffer[]) => void,
): Promise<Running> {
  const reader = client(true);
  const k = key(target.topic);
  let seen = 0;
  let stop = false;
  const acks: Promise<unknown>[] = [];
  const loop = (async () => {
    while (!stop && seen < count) {
      const res = (await reader.callBuffer(
        'XREADGROUP',
        'GROUP',
        target.group,
        'c1',
        'COUNT',
        size,
        'BLOCK',
        200,
        'STREAMS',
        k,
        '>',
      )) as [Buffer, [Buffer, Buffer[]][]][] | null;
      const entries = res?.[0]?.[1];
      if (!entries || entries.length === 0) continue;
      const ids: Buffer[] = new Array(entries.length);
      const bodies: Buffer[] = new Array(entries.length);
      for (let i = 0; i < entries.length; i++) {
        const [id, fields] = entries[i] as [Buffer, Buffer[]];
        ids[i] = id;
        bodies[i] = fields[1] as Buffer;
      }
      onRead(bodies);
      acks.push(redis.xack(k, target.group, ...ids));
      seen += entries.length;
    }
  })();
  return {
    done: loop,
    async close() {
      stop = true;
      await loop.catch(() => undefined);
      await Promise.all(acks);
      reader.disconnect();
    },
  };
}

/** Raw ioredis, best practice: pipelines of 100 XADDs, XREADGROUP COUNT n + one XACK for the whole read. */
async function rawSide(): Promise<Side> {
  const redis = client();
  const xadd = (k: string, payload: Buffer) => redis.xadd(k, '*', 'd', payload);
  const requestReply = rawRedisRequestReply(redis, () => client(true));
  return {
    label: 'raw',
    requestReply,
    async fresh() {
      const target = { topic: uniqueTopic(), group: uniqueGroup() };
      await redis.xgroup('CREATE', key(target.topic), target.group, '$', 'MKSTREAM');
      return target;
    },
    async drop(target) {
      await redis.del(key(target.topic));
    },
    async publishBatch(target, count, payload) {
      const k = key(target.topic);
      for (let sent = 0; sent < count; ) {
        const n = Math.min(BATCH, count - sent);
        const pipelines: Promise<unknown>[] = [];
        for (let i = 0; i < n; i += PIPELINE) {
          const p = redis.pipeline();
          for (let j = i; j < Math.min(n, i + PIPELINE); j++) p.xadd(k, '*', 'd', payload);
          pipelines.push(p.exec());
        }
        await Promise.all(pipelines);
        sent += n;
      }
    },
    async publishConcurrent(target, count, payload) {
      const k = key(target.topic);
      await pool(count, WINDOW, () => xadd(k, payload));
    },
    async publishOne(target, payload) {
      await xadd(key(target.topic), payload);
    },
    consume: (target, count, onBody) =>
      readGroup(redis, target, count, PREFETCH, (bodies) => {
        for (const body of bodies) onBody(body);
      }),
    consumeBatch: (target, count, batch, onBatch) => readGroup(redis, target, count, batch.maxSize, onBatch),
    async close() {
      await requestReply.close();
      await redis.quit();
    },
  };
}

export const redis: BrokerBench = {
  name: 'redis',
  defaultMessages: 30_000,
  requestMessages: 10_000,
  backlog: true,
  async available() {
    const r = new Redis(url, { lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null });
    try {
      await r.connect();
      await r.ping();
      return true;
    } catch {
      return false;
    } finally {
      r.disconnect();
    }
  },
  async version() {
    const r = client();
    try {
      const info = await r.info('server');
      return `Redis ${/redis_version:(\S+)/.exec(info)?.[1] ?? '?'}`;
    } finally {
      r.disconnect();
    }
  },
  raw: rawSide,
  async busbar() {
    const admin = client();
    const side = await busbarSide('busbar', {
      connect: { url, driver },
      cleanup: (topic) => deleteKeys(admin, `busbar:{${topic}}*`),
      requestCleanup: async (topic) => {
        await admin.del(`busbar:rr:{${topic}}`);
      },
    });
    return {
      ...side,
      close: async () => {
        await side.close();
        admin.disconnect();
      },
    };
  },
};
