import { performance } from 'node:perf_hooks';
import { isRequestScenario, requestBlock } from './request.js';
import type { BatchShape, BrokerBench, Side, Target } from './types.js';
import { atRate, deadline, makePayload, median, percentile, type Start, sample, start } from './util.js';

export type Scenario =
  | 'publishBatch'
  | 'publishConcurrent'
  | 'consume'
  | 'consumeBatch'
  | 'latency'
  | 'requestConcurrent'
  | 'requestLatency';
export const SCENARIOS: readonly Scenario[] = [
  'publishBatch',
  'publishConcurrent',
  'consume',
  'consumeBatch',
  'latency',
  'requestConcurrent',
  'requestLatency',
];

export interface Sample {
  /** msgs/s (throughput scenarios) */
  readonly rate: number;
  /** client CPU (user + system) microseconds per message */
  readonly cpuUs: number;
  /** throughput scenarios: the share of the timed window the main thread was busy (event-loop utilization) */
  readonly busy?: number;
  /** latency scenario only, ms */
  readonly p50?: number;
  readonly p99?: number;
  /** latency scenario only: every message's latency in ms, sorted (pooled over rounds, not kept in the JSON) */
  readonly latencies?: readonly number[];
}

export interface SideSummary {
  readonly rate: number;
  readonly cpuUs: number;
  /** median over rounds of Sample.busy */
  readonly busy?: number;
  readonly p50?: number;
  readonly p99?: number;
  readonly samples: readonly Sample[];
}

export interface ScenarioResult {
  readonly scenario: Scenario;
  readonly messages: number;
  readonly busbar: SideSummary;
  readonly raw?: SideSummary;
  /** median over rounds of busbar / mean(raw, raw control) (throughput), or busbar p99 - raw p99 in ms, each pooled over rounds (latency) */
  readonly ratio?: number;
  /** lowest and highest per-round ratio: how far one round can be from the median */
  readonly spread?: readonly [number, number];
  /** the raw reference this row compares with, when it is not the broker's main raw side (e.g. 'platformatic') */
  readonly reference?: string;
  /** how the compared side differs from the test's name (batch consume on a client without batches: per message) */
  readonly note?: string;
  /** why the scenario did not run on this broker (e.g. the driver has no request/reply) */
  readonly skipped?: string;
  /** median over rounds of raw control / raw: the noise of this run (1.00 = quiet) */
  readonly control?: number;
  /** throughput rounds left out of ratio and spread because their two raw blocks disagreed (see DISTURBED) */
  readonly disturbed?: number;
  readonly noisy?: boolean;
  readonly error?: string;
}

export interface BenchConfig {
  readonly messages: number | undefined;
  readonly payload: number;
  readonly rounds: number;
  readonly latencyRate: number;
  readonly latencyMessages: number;
  /** batch consume test: busbar's `subscribeBatch` batch option, and the raw sides' batch size */
  readonly batch: BatchShape;
  readonly scenarios: readonly Scenario[];
  readonly log: (line: string) => void;
}

const BLOCK_TIMEOUT_MS = 180_000;

const isLatency = (scenario: Scenario) => scenario === 'latency' || scenario === 'requestLatency';

/** One measured block of one scenario on one side, on a fresh destination. */
export async function block(
  bench: BrokerBench,
  side: Side,
  scenario: Scenario,
  count: number,
  config: BenchConfig,
): Promise<Sample> {
  if (isRequestScenario(scenario)) return requestBlock(bench, side, scenario, count, config);
  const payload = makePayload(config.payload);
  const target = await side.fresh();
  try {
    if (scenario === 'publishBatch' || scenario === 'publishConcurrent') {
      const from = start();
      const t0 = performance.now();
      await deadline(
        scenario === 'publishBatch'
          ? side.publishBatch(target, count, payload)
          : side.publishConcurrent(target, count, payload),
        BLOCK_TIMEOUT_MS,
        `${bench.name} ${side.label} ${scenario}`,
      );
      return sample(count, performance.now() - t0, from);
    }
    if (scenario === 'consume' || scenario === 'consumeBatch') {
      return await drain(bench, side, target, count, payload, scenario === 'consumeBatch' ? config.batch : undefined);
    }
    return await latency(bench, side, target, config);
  } finally {
    await side.drop(target).catch((error) => config.log(`  (cleanup failed: ${String(error)})`));
  }
}

/**
 * Drains `count` messages through a group subscription, per message or (`batch`, where the side has batch
 * consumption) in batches. With a backlog: steady state from the first delivery to the last (group joins and
 * start-up stalls are not consumption; Kafka's are reported apart), CPU and busy time over the same window.
 * Without: from the first publish, CPU from the subscribe (the publishing is part of the work).
 */
async function drain(
  bench: BrokerBench,
  side: Side,
  target: Target,
  count: number,
  payload: Buffer,
  batch: BatchShape | undefined,
): Promise<Sample> {
  if (bench.backlog) await side.publishBatch(target, count, payload);
  let first = 0;
  // The messages of the first delivery arrive before the clock starts: they are not counted in the rate.
  let firstSize = 0;
  let last = 0;
  let steady: Start | undefined;
  const delivered = (n: number) => {
    last = performance.now();
    if (first === 0) {
      first = last;
      firstSize = n;
      steady = start();
    }
  };
  const subscribed = start();
  const running =
    batch && side.consumeBatch
      ? await side.consumeBatch(target, count, batch, (bodies) => delivered(bodies.length))
      : await side.consume(target, count, () => delivered(1));
  try {
    const t0 = performance.now();
    const publishing = start();
    if (!bench.backlog) await side.publishConcurrent(target, count, payload);
    await deadline(running.done, BLOCK_TIMEOUT_MS, `${bench.name} ${side.label} ${batch ? 'consumeBatch' : 'consume'}`);
    if (bench.backlog) {
      // Nothing to time when the whole backlog came in the first delivery (a block smaller than a batch).
      if (firstSize >= count) throw new Error(`${side.label}: all ${count} messages came at once; raise --messages`);
      return sample(count - firstSize, last - first, steady as Start);
    }
    return sample(count, last - t0, subscribed, publishing);
  } finally {
    await running.close();
  }
}

/** Publishes at a fixed rate (one `publishOne` per message, not awaited in series) and records publish -> handler latency. */
async function latency(
  bench: BrokerBench,
  side: Side,
  target: Awaited<ReturnType<Side['fresh']>>,
  config: BenchConfig,
): Promise<Sample> {
  const count = config.latencyMessages;
  const payload = makePayload(Math.max(config.payload, 8));
  const samples: number[] = [];
  let primed!: () => void;
  const flowing = new Promise<void>((resolve) => {
    primed = resolve;
  });
  let seen = 0;
  // One priming message first: steady-state latency, not the subscription's start-up (measured apart: see RESULTS.md).
  const running = await side.consume(target, count + 1, (body) => {
    if (seen++ === 0) return primed();
    const sent = new DataView(body.buffer, body.byteOffset, 8).getFloat64(0, true);
    samples.push(performance.now() - sent);
  });
  try {
    await side.publishOne(target, payload);
    await deadline(flowing, BLOCK_TIMEOUT_MS, `${bench.name} ${side.label} latency priming`);
  } catch (error) {
    await running.close();
    throw error;
  }
  const cpu = process.cpuUsage();
  try {
    const pending: Promise<void>[] = [];
    await atRate(count, config.latencyRate, () => {
      const body = Buffer.from(payload);
      body.writeDoubleLE(performance.now(), 0);
      pending.push(side.publishOne(target, body));
    });
    await deadline(Promise.all(pending), BLOCK_TIMEOUT_MS, `${bench.name} ${side.label} latency publish`);
    await deadline(running.done, BLOCK_TIMEOUT_MS, `${bench.name} ${side.label} latency consume`);
  } finally {
    await running.close();
  }
  const used = process.cpuUsage(cpu);
  samples.sort((a, b) => a - b);
  return {
    rate: config.latencyRate,
    cpuUs: (used.user + used.system) / count,
    p50: percentile(samples, 50),
    p99: percentile(samples, 99),
    latencies: samples,
  };
}

/**
 * A side's rounds. Latency: p50 and p99 of every message of every round pooled. A block of 1,000 messages
 * has its p99 in its 10 slowest, so one GC pause or broker hiccup moved a round's p99 by milliseconds (raw
 * against its own control: 0.59 to 4.55 ms in one run); pooled, such a burst is a fraction of the 1%.
 */
function summarize(samples: Sample[]): SideSummary {
  const pooled = samples.flatMap((s) => s.latencies ?? []).sort((a, b) => a - b);
  return {
    rate: median(samples.map((s) => s.rate)),
    cpuUs: median(samples.map((s) => s.cpuUs)),
    ...(samples.every((s) => s.busy !== undefined) && samples.length > 0
      ? { busy: median(samples.map((s) => s.busy as number)) }
      : {}),
    ...(pooled.length ? { p50: percentile(pooled, 50), p99: percentile(pooled, 99) } : {}),
    samples: samples.map(({ latencies: _, ...kept }) => kept),
  };
}

/**
 * Runs one scenario: a warm-up block per side, then `rounds` rounds of
 * raw, busbar, raw-control (order reversed every other round: A B A' / A' B A),
 * each block on a fresh destination.
 */
export async function runScenario(
  bench: BrokerBench,
  given: { busbar: Side; raw?: Side },
  scenario: Scenario,
  config: BenchConfig,
  reference?: string,
): Promise<ScenarioResult> {
  if (isRequestScenario(scenario) && !given.busbar.requestReply) {
    return { scenario, messages: 0, busbar: NO_SAMPLES, skipped: 'the driver has no request/reply' };
  }
  // busbar alone when the raw side has no request/reply written, rather than no row.
  const sides = isRequestScenario(scenario) && !given.raw?.requestReply ? { busbar: given.busbar } : given;
  const count = isLatency(scenario)
    ? config.latencyMessages
    : (config.messages ??
      (scenario === 'consume' || scenario === 'consumeBatch' ? bench.consumeMessages : undefined) ??
      (isRequestScenario(scenario) ? bench.requestMessages : undefined) ??
      bench.defaultMessages);
  const warm = isLatency(scenario) ? config : { ...config, latencyMessages: Math.ceil(config.latencyMessages / 4) };
  // A batch drain needs several batches to time anything: a warm-up of one batch could arrive whole.
  const warmCount = Math.max(scenario === 'consumeBatch' ? 4 * config.batch.maxSize : 100, Math.ceil(count / 4));
  for (const side of [sides.raw, sides.busbar]) if (side) await block(bench, side, scenario, warmCount, warm);

  const busbar: Sample[] = [];
  const raw: Sample[] = [];
  const control: Sample[] = [];
  const ratios: number[] = [];
  const controls: number[] = [];
  // A throughput round whose raw blocks (before and after busbar's) disagree by more than DISTURBED was disturbed
  // (the machine, the broker): it is left out of the ratio and replaced by another round, up to `rounds` more.
  const kept: number[] = [];
  let limit = config.rounds;
  for (let round = 0; round < limit; round++) {
    if (!sides.raw) {
      busbar.push(await block(bench, sides.busbar, scenario, count, config));
      continue;
    }
    const order: Array<'raw' | 'busbar' | 'control'> =
      round % 2 === 0 ? ['raw', 'busbar', 'control'] : ['control', 'busbar', 'raw'];
    const got: Partial<Record<'raw' | 'busbar' | 'control', Sample>> = {};
    for (const which of order) {
      got[which] = await block(bench, which === 'busbar' ? sides.busbar : sides.raw, scenario, count, config);
    }
    const a = got.raw as Sample;
    const b = got.busbar as Sample;
    const c = got.control as Sample;
    raw.push(a);
    busbar.push(b);
    control.push(c);
    if (isLatency(scenario)) {
      ratios.push((b.p99 as number) - ((a.p99 as number) + (c.p99 as number)) / 2);
      controls.push((c.p99 as number) / (a.p99 as number));
    } else {
      ratios.push(b.rate / ((a.rate + c.rate) / 2));
      controls.push(c.rate / a.rate);
    }
    const disturbed = !isLatency(scenario) && Math.abs(c.rate / a.rate - 1) > DISTURBED;
    if (!disturbed) kept.push(ratios[ratios.length - 1] as number);
    else if (limit < 2 * config.rounds) limit++;
    config.log(
      `  ${scenario}${reference ? ` vs ${reference}` : ''} round ${round + 1}: raw ${fmtSample(a, scenario)} | busbar ${fmtSample(b, scenario)} | control ${fmtSample(c, scenario)}`,
    );
  }
  if (!sides.raw) {
    const alone = summarize(busbar);
    config.log(`  ${scenario}: busbar ${fmtSample(alone, scenario)}`);
    return { scenario, messages: count, busbar: alone };
  }
  const ctl = median(controls);
  // Too few undisturbed rounds to stand on their own: all of them, and the row shows as noisy.
  const used = kept.length >= Math.ceil(config.rounds / 2) ? kept : ratios;
  const rawSide = summarize([...raw, ...control]);
  const busbarSide = summarize(busbar);
  // Latency: the pooled p99s (see summarize); the spread stays per round.
  const ratio = isLatency(scenario) ? (busbarSide.p99 as number) - (rawSide.p99 as number) : median(used);
  // The main raw side of a client without batch consumption (MQTT) drains per message: the row says so.
  const perMessage = scenario === 'consumeBatch' && !reference && !sides.raw.consumeBatch;
  return {
    scenario,
    messages: count,
    busbar: busbarSide,
    raw: rawSide,
    ratio,
    spread: [Math.min(...used), Math.max(...used)],
    ...(used === kept && kept.length < ratios.length ? { disturbed: ratios.length - kept.length } : {}),
    ...(reference ? { reference } : {}),
    ...(perMessage ? { note: 'per message' } : {}),
    control: ctl,
    // p99 of a few hundred samples is itself noisy: only throughput controls decide noise.
    noisy: !isLatency(scenario) && Math.abs(ctl - 1) > 0.05,
  };
}

/** How far (as a fraction) a round's raw control may be from its raw block before the round counts as disturbed. */
export const DISTURBED = 0.1;

const NO_SAMPLES: SideSummary = { rate: Number.NaN, cpuUs: Number.NaN, samples: [] };

export function fmtSample(
  s: { rate: number; cpuUs: number; busy?: number; p50?: number; p99?: number },
  scenario: Scenario,
): string {
  if (isLatency(scenario)) return `p50 ${s.p50?.toFixed(2)} ms p99 ${s.p99?.toFixed(2)} ms ${s.cpuUs.toFixed(1)} us`;
  return `${Math.round(s.rate)}/s ${s.cpuUs.toFixed(1)} us/msg${s.busy === undefined ? '' : ` busy ${s.busy.toFixed(2)}`}`;
}
