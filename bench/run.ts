/**
 * `npm run bench -- --transports redis,nats --messages 20000 --payload 256 --rounds 8`
 * busbar against the raw client on every broker that answers, interleaved in one process.
 * `--rss` runs the backlog memory test instead (`--rss-messages 1000000`).
 */
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { BENCHES } from './benches.js';
import { COMPARE_HEADERS, compareRows, loadRun, type RunJson, runTitle } from './lib/compare.js';
import {
  type BenchConfig,
  DISTURBED,
  runScenario,
  SCENARIOS,
  type Scenario,
  type ScenarioResult,
} from './lib/harness.js';
import {
  type BrokerResult,
  gitCommit,
  HEADERS,
  machine,
  markdownTable,
  RSS_HEADERS,
  type RssResult,
  rows,
  rssRows,
  textTable,
} from './lib/report.js';
import { runRss } from './lib/rss.js';
import type { BrokerBench, Reference, Side } from './lib/types.js';
import { BATCH_SIZE, BATCH_WAIT_MS, deadline, PREFETCH } from './lib/util.js';

const { values } = parseArgs({
  options: {
    transports: { type: 'string', default: Object.keys(BENCHES).join(',') },
    messages: { type: 'string' },
    payload: { type: 'string', default: '256' },
    rounds: { type: 'string', default: '8' },
    tests: { type: 'string', default: SCENARIOS.join(',') },
    'latency-rate': { type: 'string', default: '1000' },
    'latency-messages': { type: 'string', default: '1000' },
    'batch-size': { type: 'string', default: String(BATCH_SIZE) },
    rss: { type: 'boolean', default: false },
    peers: { type: 'boolean', default: false },
    'rss-messages': { type: 'string', default: '1000000' },
    'no-md': { type: 'boolean', default: false },
    compare: { type: 'string' },
    help: { type: 'boolean', default: false },
  },
});

if (values.help) {
  console.log(`npm run bench -- [options]
  --transports a,b     ${Object.keys(BENCHES).join(',')} (default: all that answer)
  --messages N         messages per block (default: per broker, ~0.5 s of work)
  --payload BYTES      payload size (default 256)
  --rounds N           measured rounds of raw / busbar / raw-control blocks (default 8)
  --tests a,b          ${SCENARIOS.join(',')}
  --latency-rate N     messages/s in the latency test (default 1000)
  --latency-messages N messages per latency block (default 1000)
  --batch-size N       consumeBatch: messages per batch, busbar subscribeBatch maxSize and raw (default ${BATCH_SIZE}, max ${PREFETCH})
  --peers              busbar against peer libraries instead (bench/PEERS.md; npm install --prefix bench/peers first)
  --rss                backlog memory test instead: peak RSS while busbar drains --rss-messages (default 1000000)
  --compare A.json     after the run, this run beside run A (bench/results/*.json) per row, also in RESULTS.md
  --no-md              do not rewrite bench/RESULTS.md
Two finished runs side by side: node bench/dist/compare.js A.json [B.json]`);
  process.exit(0);
}

const here = path.dirname(fileURLToPath(import.meta.url));
const benchDir = path.resolve(here, '..');
const names = (values.transports ?? '').split(',').filter(Boolean);
for (const name of names) {
  if (!BENCHES[name]) {
    console.error(`Unknown transport '${name}' (known: ${Object.keys(BENCHES).join(', ')})`);
    process.exit(2);
  }
}
const batchSize = Number(values['batch-size']);
// Both sides hold PREFETCH unacked messages: a batch must fit (busbar refuses prefetch < maxSize).
if (!Number.isInteger(batchSize) || batchSize < 1 || batchSize > PREFETCH) {
  console.error(`--batch-size must be an integer from 1 to ${PREFETCH}`);
  process.exit(2);
}
const tests = (values.tests ?? '').split(',').filter(Boolean) as Scenario[];
for (const t of tests) {
  if (!SCENARIOS.includes(t)) {
    console.error(`Unknown test '${t}' (known: ${SCENARIOS.join(', ')})`);
    process.exit(2);
  }
}

// Read before the run: a bad path fails now, not after ten minutes of benchmarking.
const previous: RunJson | undefined = values.compare ? loadRun(values.compare) : undefined;

const config: BenchConfig = {
  messages: values.messages ? Number(values.messages) : undefined,
  payload: Number(values.payload),
  rounds: Number(values.rounds),
  latencyRate: Number(values['latency-rate']),
  latencyMessages: Number(values['latency-messages']),
  batch: { maxSize: batchSize, maxWaitMs: BATCH_WAIT_MS },
  scenarios: tests,
  log: (line) => console.log(line),
};

async function benchBroker(bench: BrokerBench): Promise<BrokerResult> {
  const version = await bench.version().catch((e) => `unknown (${String(e)})`);
  console.log(`\n== ${bench.name} (${version})`);
  const busbar = await bench.busbar();
  const raw = bench.raw ? await bench.raw() : undefined;
  const references: readonly Reference[] = bench.references
    ? await bench.references().catch((error: unknown) => {
        console.log(`  (no raw references: ${String(error)})`);
        return [];
      })
    : [];
  const scenarios: ScenarioResult[] = [];
  const attempt = async (scenario: Scenario, other: Side | undefined, reference?: string) => {
    try {
      scenarios.push(
        await runScenario(bench, { busbar, ...(other ? { raw: other } : {}) }, scenario, config, reference),
      );
    } catch (error) {
      console.log(
        `  ${scenario}${reference ? ` vs ${reference}` : ''} failed: ${(error as Error).stack ?? String(error)}`,
      );
      scenarios.push({
        scenario,
        messages: 0,
        busbar: { rate: Number.NaN, cpuUs: Number.NaN, samples: [] },
        ...(reference ? { reference } : {}),
        error: String((error as Error).message ?? error),
      });
    }
  };
  try {
    for (const scenario of config.scenarios) {
      await attempt(scenario, raw);
      // The speed-up batches give busbar users: the same drain through busbar's per-message consume.
      if (scenario === 'consumeBatch') {
        const side = perMessage(busbar);
        await attempt(scenario, side, side.label);
      }
      for (const ref of references)
        if (ref.scenarios.includes(scenario)) await attempt(scenario, ref.side, ref.side.label);
    }
  } finally {
    await busbar.close().catch(() => undefined);
    await raw?.close().catch(() => undefined);
    for (const ref of references) await ref.side.close().catch(() => undefined);
  }
  return { transport: bench.name, version, scenarios };
}

/** busbar without batch consumption: the batch test drains it through `consume` (prefetch and concurrency as there). */
function perMessage(busbar: Side): Side {
  const { consumeBatch: _, ...side } = busbar;
  return { ...side, label: 'busbar per-message' };
}

async function main(): Promise<void> {
  const started = new Date();
  const info = machine();
  console.log(
    `busbar bench ${started.toISOString()} on ${info.cpu}, ${info.cores} cores, ${info.memoryGiB} GiB, Node ${info.node}, load ${info.loadAverage.join(' ')}`,
  );
  const present: BrokerBench[] = [];
  for (const name of names) {
    const bench = BENCHES[name] as BrokerBench;
    // Bounded: a frozen broker (accepts TCP, never answers) must be skipped, not hang the run.
    if (await deadline(bench.available(), 10_000, 'probe').catch(() => false)) present.push(bench);
    else console.log(`(skipping ${name}: broker not reachable)`);
  }
  const resultsDir = path.join(benchDir, 'results');
  mkdirSync(resultsDir, { recursive: true });
  const stamp = started.toISOString().replace(/[:.]/g, '-');

  if (values.rss) {
    const rss: RssResult[] = [];
    for (const bench of present) {
      rss.push(await runRss(bench, Number(values['rss-messages']), config.payload, here));
      await bench.shutdown?.().catch(() => undefined);
    }
    console.log(`\n${textTable(RSS_HEADERS, rssRows(rss))}`);
    const file = path.join(resultsDir, `rss-${stamp}.json`);
    writeFileSync(file, `${JSON.stringify({ started, machine: info, commit: gitCommit(), rss }, null, 2)}\n`);
    console.log(`\nJSON: ${path.relative(process.cwd(), file)}`);
    if (!values['no-md']) {
      const section = rssMarkdown(started, info, Number(values['rss-messages']), rss);
      writeFileSync(resultsFile, withRssSection(readResults(), section));
      console.log('Markdown: bench/RESULTS.md (backlog memory section)');
    }
    return;
  }

  if (values.peers) {
    // Loaded only here: the peers live in bench/peers/node_modules, installed apart.
    const { runPeers } = await import('./peers/run.js');
    const { writePeersMarkdown } = await import('./peers/report.js');
    const results = await runPeers(present, config);
    const table = rows(results);
    console.log(`\n${textTable(HEADERS, table)}`);
    const json = { started, machine: info, commit: gitCommit(), config, results };
    const file = path.join(resultsDir, `peers-${stamp}.json`);
    writeFileSync(file, `${JSON.stringify(json, null, 2)}\n`);
    console.log(`\nJSON: ${path.relative(process.cwd(), file)}`);
    if (!values['no-md']) {
      writePeersMarkdown(path.join(benchDir, 'PEERS.md'), json, table);
      console.log('Markdown: bench/PEERS.md');
    }
    return;
  }

  const results: BrokerResult[] = [];
  for (const bench of present) {
    try {
      results.push(await benchBroker(bench));
    } catch (error) {
      console.log(`  ${bench.name} failed: ${String(error)}`);
      results.push({ transport: bench.name, version: '', scenarios: [], error: String(error) });
    } finally {
      await bench.shutdown?.().catch(() => undefined);
    }
  }
  const table = rows(results);
  console.log(`\n${textTable(HEADERS, table)}`);
  console.log(
    '\nbusbar/raw: median over rounds of busbar / mean(raw, raw control) msgs/s (latency rows: busbar p99 - raw p99, every message of every round pooled per side);' +
      ' spread: the lowest and highest per-round value.' +
      '\nraw/raw control: median over rounds of the second raw block / the first; more than 5% off 1.00 = too noisy.',
  );
  const finished = new Date();
  const json = { started, finished, machine: info, commit: gitCommit(), config, results };
  const file = path.join(resultsDir, `${stamp}.json`);
  writeFileSync(file, `${JSON.stringify(json, null, 2)}\n`);
  console.log(`\nJSON: ${path.relative(process.cwd(), file)}`);
  const comparison = previous
    ? compareRows(previous, { started: started.toISOString(), commit: json.commit, results })
    : undefined;
  if (previous && comparison) {
    console.log(`\nA: ${runTitle(previous)}, B: this run\n${textTable(COMPARE_HEADERS, comparison)}`);
  }
  if (!values['no-md']) {
    const old = readResults();
    const rssPart = /<!-- rss:start -->[\s\S]*<!-- rss:end -->/.exec(old)?.[0];
    // Hand-written findings (profiles, fixes proposed) survive re-runs.
    const notes = /<!-- notes:start -->[\s\S]*<!-- notes:end -->/.exec(old)?.[0];
    const compared = previous && comparison ? compareMarkdown(previous, comparison) : undefined;
    const text = withRssSection(resultsMarkdown(json, table, compared), rssPart);
    writeFileSync(resultsFile, notes ? `${text.trimEnd()}\n\n${notes}\n` : text);
    console.log('Markdown: bench/RESULTS.md');
  }
}

const resultsFile = path.join(benchDir, 'RESULTS.md');

function readResults(): string {
  return existsSync(resultsFile) ? readFileSync(resultsFile, 'utf8') : '# busbar bench results\n';
}

/** Replaces (or appends) the backlog memory section, kept between markers so each kind of run updates only its part. */
function withRssSection(text: string, section: string | undefined): string {
  if (!section) return text;
  const marked = section.startsWith('<!-- rss:start -->') ? section : `<!-- rss:start -->\n${section}<!-- rss:end -->`;
  const re = /<!-- rss:start -->[\s\S]*<!-- rss:end -->/;
  if (re.test(text)) return text.replace(re, marked);
  // Before the notes section when there is one, so the order stays: throughput, memory, notes.
  const notes = text.indexOf('<!-- notes:start -->');
  if (notes >= 0) return `${text.slice(0, notes).trimEnd()}\n\n${marked}\n\n${text.slice(notes)}`;
  return `${text.trimEnd()}\n\n${marked}\n`;
}

function rssMarkdown(started: Date, m: ReturnType<typeof machine>, messages: number, rss: RssResult[]): string {
  return `## Memory while draining a backlog (\`npm run bench -- --rss\`)

Run ${started.toISOString()} on the same kind of machine (${m.cpu}, ${m.cores} cores, Node ${m.node}): a backlog of
${messages.toLocaleString('en-US')} messages is published through busbar, then a fresh process drains it with a group
subscription (prefetch ${1000}, concurrency ${100}); RSS is that process's resident memory. The live heap is
\`heapUsed\` right after a forced full GC at 10%, 50% and 90% of the drain: flat means nothing grows with the
backlog (RSS rises to a plateau because V8 lets garbage and young-generation space accumulate before collecting).

${markdownTable(RSS_HEADERS, rssRows(rss))}
`;
}

function resultsMarkdown(
  json: {
    started: Date;
    finished: Date;
    machine: ReturnType<typeof machine>;
    commit: string;
    config: BenchConfig;
    results: BrokerResult[];
  },
  table: string[][],
  compared?: string,
): string {
  const m = json.machine;
  const versions = json.results.map((r) => `${r.transport}: ${r.version}`).join('; ');
  return `# busbar bench results

Run ${json.started.toISOString()} (${Math.round((json.finished.getTime() - json.started.getTime()) / 1000)} s), commit \`${json.commit}\`, with
\`npm run bench -- --rounds ${json.config.rounds} --payload ${json.config.payload}${json.config.messages ? ` --messages ${json.config.messages}` : ''}\`.

Machine: ${m.cpu}, ${m.cores} cores, ${m.memoryGiB} GiB, ${m.os}, Node ${m.node}; broker and client share the cores over loopback; load average at start ${m.loadAverage.join(' ')}.
Brokers: ${versions}.

${markdownTable(HEADERS, table)}

- raw / busbar: median msgs/s over the rounds (request, concurrent: round trips/s; latency rows: p50 / p99 in ms at ${json.config.latencyRate} msgs/s or requests/s, of every message of every round pooled per side, raw with its control).
- busbar/raw: median over rounds of busbar / mean(raw, raw control) (target >= 0.90); latency rows: busbar p99 minus raw p99, both pooled (target < 1 ms).
- spread (min..max): the lowest and highest per-round busbar/raw of the ${json.config.rounds} rounds (latency rows: of the p99 differences, ms); the median alone hides how far one round can land.
- disturbed: a throughput round whose two raw blocks differ by more than ${Math.round(DISTURBED * 100)}% was disturbed (the machine, the broker) and is left out of busbar/raw and spread, and run again (at most ${json.config.rounds} extra rounds); with fewer than half the rounds undisturbed, all count.
- batch consume: \`subscribeBatch\` (maxSize ${json.config.batch.maxSize}) against the raw client's batch consumption (bench/README.md); its \`vs busbar per-message\` row compares it with busbar's own \`consume\`: busbar/raw there is the speed-up of batch handlers.
- vs raw (<name>): a second raw reference on the same broker (another client, or another way to use the same client), in rounds of its own.
- us/msg: client CPU (user + system, \`process.cpuUsage\`) per message, median; per round trip in the request rows (requester and responder share the process).
- main thread busy: the share of the timed window the side's main thread was busy (event-loop utilization), median; near 1.00 the side ran as fast as its own JavaScript allowed, lower it waited on the broker. A backlog drain's CPU and busy share cover its timed window, the first delivery to the last.
- raw/raw control: the raw side run twice per round; more than 5% off 1.00 means the machine was too noisy for that line.
- Every block uses a fresh topic/queue/stream (deleted after), warm-up first, blocks interleaved raw, busbar, raw (reversed every other round).
${compared ?? ''}`;
}

function compareMarkdown(previous: RunJson, body: string[][]): string {
  return `
### This run beside the run of ${runTitle(previous)}

Run A is the earlier run, B this one; B - A per row (latency rows in ms of p99 overhead). Two runs of the same
commit should agree within +/-0.10.

${markdownTable(COMPARE_HEADERS, body)}
`;
}

// Exit explicitly: client libraries (kafkajs timers) can keep the event loop alive after close.
main().then(
  () => process.exit(process.exitCode ?? 0),
  (error) => {
    console.error(error);
    process.exit(1);
  },
);
