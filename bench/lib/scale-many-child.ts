/**
 * Child of scale (b): one bus, `count` group subscriptions on `count` topics (one first segment each), all
 * subscribed at once as an application starting its handlers would. Prints one JSON line (ManyReport).
 */
import { readdirSync, readFileSync, readlinkSync } from 'node:fs';
import { performance } from 'node:perf_hooks';
import { bytesCodec, connect, defineTopic, silentLogger } from '@busbar/core';
import { brokerPort, connectOptions, manyTopics, type ScaleBroker } from './scale-brokers.js';
import { deadline, pool, sleep } from './util.js';

export interface ManySpec {
  readonly broker: ScaleBroker;
  readonly url: string;
  /** Topics are `manyTopics(prefix, count)`. */
  readonly prefix: string;
  readonly count: number;
  readonly group: string;
  /** Subscribe calls in flight at once (all by default). */
  readonly window: number;
}

export interface Footprint {
  readonly rssMb: number;
  readonly heapMb: number;
  /** Established TCP connections of this process to the broker's port. */
  readonly sockets: number;
}

export interface ManyReport {
  readonly before: Footprint;
  readonly after: Footprint;
  readonly subscribeMs: number;
  readonly closeMs: number;
}

/** Socket inodes of this process matched against the kernel's TCP table: no `ss` or `lsof` needed. */
function brokerSockets(port: number): number {
  const inodes = new Set<string>();
  for (const fd of readdirSync('/proc/self/fd')) {
    try {
      const m = /^socket:\[(\d+)\]$/.exec(readlinkSync(`/proc/self/fd/${fd}`));
      if (m?.[1]) inodes.add(m[1]);
    } catch {
      // closed between readdir and readlink
    }
  }
  let n = 0;
  for (const table of ['/proc/self/net/tcp', '/proc/self/net/tcp6']) {
    for (const line of readFileSync(table, 'utf8').split('\n').slice(1)) {
      const f = line.trim().split(/\s+/);
      // f[2] remote address:port (hex), f[3] state (01 = established), f[9] inode
      if (f.length < 10 || f[3] !== '01' || !inodes.has(f[9] as string)) continue;
      if (Number.parseInt(f[2]?.split(':')[1] ?? '', 16) === port) n++;
    }
  }
  return n;
}

const gc = (globalThis as { gc?: () => void }).gc;
const mb = (bytes: number) => Math.round((bytes / 2 ** 20) * 10) / 10;

async function footprint(port: number): Promise<Footprint> {
  // Twice, with a turn between: the first pass frees what finalizers release for the second.
  gc?.();
  await sleep(50);
  gc?.();
  const m = process.memoryUsage();
  return { rssMb: mb(m.rss), heapMb: mb(m.heapUsed), sockets: brokerSockets(port) };
}

const spec = JSON.parse(process.argv[2] ?? '{}') as ManySpec;
const port = brokerPort(spec.url);
const bus = await connect({ logger: silentLogger, ...connectOptions(spec.broker, spec.url, `${spec.group}b`) });
const before = await footprint(port);
const t0 = performance.now();
const topics = manyTopics(spec.prefix, spec.count);
await deadline(
  pool(spec.count, spec.window, (i) =>
    bus.subscribe(defineTopic<Uint8Array>(topics[i] as string, undefined, { codec: bytesCodec }), () => undefined, {
      group: spec.group,
    }),
  ),
  180_000,
  `subscribing ${spec.count} topics`,
);
const subscribeMs = performance.now() - t0;
// Let connections opened after `subscribe` resolved (fetch sessions, reader pools) show up.
await sleep(1_000);
const after = await footprint(port);
const t1 = performance.now();
await bus.close();
const closeMs = performance.now() - t1;
const report: ManyReport = { before, after, subscribeMs, closeMs };
console.log(JSON.stringify(report));
process.exit(0);
