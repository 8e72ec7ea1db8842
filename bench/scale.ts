/**
 * `node bench/dist/scale.js [--transports redis,nats] [--messages 100000]`: how busbar scales (issue 18, item 7).
 *  (a) group: one consumer group draining a backlog with 1, 2 and 4 member processes;
 *  (b) many: 1,000 subscriptions on one bus (subscribe time, TCP connections, memory, close time);
 *  (c) rss: peak RSS while an MQTT group member drains a backlog kept in its persistent session.
 * Prints markdown tables and writes bench/results/scale-<timestamp>.json; RESULTS.md is written by hand.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { gitCommit, machine, markdownTable, RSS_HEADERS, type RssResult, rssRows } from './lib/report.js';
import { brokerPort, DEFAULT_URLS, SCALE_BROKERS, type ScaleBroker } from './lib/scale-brokers.js';
import { type GroupResult, runGroup } from './lib/scale-group.js';
import { type ManyResult, runMany } from './lib/scale-many.js';
import { type Mosquitto, startMosquitto } from './lib/scale-mosquitto.js';
import { runMqttRss } from './lib/scale-rss.js';
import { makePayload } from './lib/util.js';

const PARTS = ['group', 'many', 'rss'] as const;
const { values } = parseArgs({
  options: {
    transports: { type: 'string', default: SCALE_BROKERS.join(',') },
    parts: { type: 'string', default: PARTS.join(',') },
    messages: { type: 'string', default: '100000' },
    processes: { type: 'string', default: '1,2,4' },
    subscriptions: { type: 'string', default: '1000' },
    'subscribe-window': { type: 'string' },
    'rss-messages': { type: 'string', default: '200000' },
    payload: { type: 'string', default: '256' },
    help: { type: 'boolean', default: false },
  },
});
if (values.help) {
  console.log(`node bench/dist/scale.js [options]
  --transports a,b     ${SCALE_BROKERS.join(',')} (default: all that answer)
  --parts a,b          ${PARTS.join(',')} (default: all)
  --messages N         group: backlog drained per process count (default 100000)
  --processes 1,2,4    group: member process counts
  --subscriptions N    many: subscriptions (topics) on one bus (default 1000)
  --subscribe-window N many: subscribe calls in flight at once (default: all)
  --rss-messages N     rss: MQTT backlog (default 200000)
  --payload BYTES      payload size (default 256)`);
  process.exit(0);
}

const distDir = path.dirname(fileURLToPath(import.meta.url));
const list = (text: string | undefined) => (text ?? '').split(',').filter(Boolean);
const brokers = list(values.transports) as ScaleBroker[];
const parts = list(values.parts);
for (const b of brokers) if (!SCALE_BROKERS.includes(b)) throw new Error(`unknown transport '${b}'`);
for (const p of parts) if (!PARTS.some((k) => k === p)) throw new Error(`unknown part '${p}'`);
const messages = Number(values.messages);
const processCounts = list(values.processes).map(Number);
const payload = makePayload(Number(values.payload));

function answers(url: string): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect({ host: '127.0.0.1', port: brokerPort(url) });
    s.setTimeout(2_000, () => s.destroy());
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
    s.once('close', () => resolve(false));
  });
}

/** Runs `fn` against the broker's URL; MQTT gets a fresh private Mosquitto for each part (no sessions left over). */
async function withBroker<T>(broker: ScaleBroker, fn: (url: string) => Promise<T>): Promise<T> {
  if (broker !== 'mqtt') return fn(DEFAULT_URLS[broker]);
  return withMosquitto((m) => fn(m.url));
}

async function withMosquitto<T>(fn: (mosquitto: Mosquitto) => Promise<T>): Promise<T> {
  const mosquitto = await startMosquitto();
  try {
    return await fn(mosquitto);
  } finally {
    await mosquitto.stop();
  }
}

const rate = (r: number) => `${(r / 1000).toFixed(1)}k/s`;

function groupRows(results: readonly GroupResult[]): string[][] {
  return results.map((r) => {
    if (r.error) return [r.broker, String(r.processes), r.error.slice(0, 200), '', '', '', ''];
    const one = results.find((o) => o.broker === r.broker && o.processes === 1 && !o.error);
    return [
      r.broker + (r.broker === 'mqtt' ? ' (end to end)' : ''),
      String(r.processes),
      rate(r.rate),
      rate(r.rate / r.processes),
      one ? `${(r.rate / one.rate).toFixed(2)}x` : '',
      r.shares.map((s) => `${Math.round((s / r.messages) * 100)}%`).join(' / ') + (r.extra ? ` (+${r.extra})` : ''),
      r.cpuUs.toFixed(1),
    ];
  });
}

const GROUP_HEADERS = [
  'transport',
  'processes',
  'aggregate',
  'per process',
  'vs 1 process',
  'share of each member',
  'client CPU us/msg',
];

function manyRows(results: readonly ManyResult[]): string[][] {
  return results.map((r) => {
    const label = `${r.subscriptions}${r.window < r.subscriptions ? ` (${r.window} at a time)` : ''}`;
    if (r.error || !r.before || !r.after) return [r.broker, label, (r.error ?? '').slice(0, 200)];
    const perSub = ((r.after.heapMb - r.before.heapMb) * 1024) / r.subscriptions;
    return [
      r.broker,
      label,
      `${((r.subscribeMs ?? 0) / 1000).toFixed(1)} s`,
      `${r.before.sockets} / ${r.after.sockets}`,
      `${r.before.rssMb} / ${r.after.rssMb} MB`,
      `${r.before.heapMb} / ${r.after.heapMb} MB`,
      `${perSub.toFixed(1)} KB`,
      `${((r.closeMs ?? 0) / 1000).toFixed(2)} s`,
      `${((r.cleanupMs ?? 0) / 1000).toFixed(1)} s`,
    ];
  });
}

const MANY_HEADERS = [
  'transport',
  'subscriptions',
  'subscribe all',
  'TCP connections to the broker before / after',
  'RSS before / after',
  'heap after GC before / after',
  'heap per subscription',
  'close',
  'cleanup',
];

async function main(): Promise<void> {
  const started = new Date();
  const info = machine();
  console.log(`busbar scale ${started.toISOString()}, ${info.cpu}, ${info.cores} cores, load ${info.loadAverage}`);
  const present: ScaleBroker[] = [];
  for (const b of brokers) {
    if (b === 'mqtt' || (await answers(DEFAULT_URLS[b]))) present.push(b);
    else console.log(`(skipping ${b}: broker not reachable)`);
  }
  const group: GroupResult[] = [];
  const many: ManyResult[] = [];
  const rss: RssResult[] = [];
  for (const broker of present) {
    if (parts.includes('group')) {
      for (const n of processCounts) {
        console.log(`== ${broker}: group of ${n} process(es), ${messages} messages`);
        const r = await withBroker(broker, (url) => runGroup(broker, url, n, messages, payload, distDir));
        console.log(`   ${r.error ?? `${rate(r.rate)} (members ${r.shares.join(' / ')})`}`);
        group.push(r);
      }
    }
    if (parts.includes('many')) {
      const count = Number(values.subscriptions);
      const window = Number(values['subscribe-window'] ?? count);
      console.log(`== ${broker}: ${count} subscriptions on one bus, ${window} subscribe calls at a time`);
      const r = await withBroker(broker, (url) => runMany(broker, url, count, window, distDir));
      console.log(`   ${JSON.stringify(r)}`);
      many.push(r);
    }
    if (parts.includes('rss') && broker === 'mqtt') {
      const count = Number(values['rss-messages']);
      console.log(`== mqtt: backlog of ${count} in a persistent session, peak RSS while draining`);
      const r = await withMosquitto((m) => runMqttRss(m, count, payload, distDir));
      console.log(`   ${JSON.stringify(r)}`);
      rss.push(r);
    }
  }
  if (group.length > 0) console.log(`\n${markdownTable(GROUP_HEADERS, groupRows(group))}`);
  if (many.length > 0) console.log(`\n${markdownTable(MANY_HEADERS, manyRows(many))}`);
  if (rss.length > 0) console.log(`\n${markdownTable(RSS_HEADERS, rssRows(rss))}`);
  const dir = path.resolve(distDir, '..', 'results');
  mkdirSync(dir, { recursive: true });
  const file = path.join(dir, `scale-${started.toISOString().replace(/[:.]/g, '-')}.json`);
  const json = { started, machine: info, commit: gitCommit(), messages, group, many, rss };
  writeFileSync(file, `${JSON.stringify(json, null, 2)}\n`);
  console.log(`\nJSON: ${path.relative(process.cwd(), file)}`);
}

// Exit explicitly: client libraries (kafkajs timers) can keep the event loop alive after close.
main().then(
  () => process.exit(0),
  (error: unknown) => {
    console.error(error);
    process.exit(1);
  },
);
