import { execFileSync } from 'node:child_process';
import os from 'node:os';
import type { Scenario, ScenarioResult } from './harness.js';

export interface BrokerResult {
  readonly transport: string;
  readonly version: string;
  readonly scenarios: readonly ScenarioResult[];
  readonly error?: string;
}

export interface RssResult {
  readonly transport: string;
  readonly backlog: number;
  readonly drainRate: number;
  readonly baselineRssMb: number;
  readonly peakRssMb: number;
  /** RSS at 10%, 50% and 90% of the drain */
  readonly atMb?: readonly number[];
  /** heap in use after a full GC at 10%, 50% and 90% */
  readonly liveMb?: readonly number[];
  readonly error?: string;
}

export interface Machine {
  readonly cpu: string;
  readonly cores: number;
  readonly memoryGiB: number;
  readonly node: string;
  readonly os: string;
  readonly loadAverage: readonly number[];
}

export function machine(): Machine {
  return {
    cpu: os.cpus()[0]?.model.trim() ?? 'unknown',
    cores: os.availableParallelism(),
    memoryGiB: Math.round((os.totalmem() / 2 ** 30) * 10) / 10,
    node: process.version,
    os: `${os.type()} ${os.release()}`,
    loadAverage: os.loadavg().map((l) => Math.round(l * 100) / 100),
  };
}

export function gitCommit(): string {
  try {
    return execFileSync('git', ['rev-parse', '--short', 'HEAD'], { encoding: 'utf8' }).trim();
  } catch {
    return 'unknown';
  }
}

const LABEL: Record<Scenario, string> = {
  publishBatch: 'publishBatch',
  publishConcurrent: 'publish, concurrent',
  consume: 'consume + ack',
  consumeBatch: 'batch consume + ack',
  latency: 'e2e latency',
  requestConcurrent: 'request, concurrent',
  requestLatency: 'request latency',
};

const isLatency = (scenario: Scenario) => scenario === 'latency' || scenario === 'requestLatency';

/** A ratio as the table shows it: a factor for throughput, p99 milliseconds over raw for latency. */
export function fmtRatio(ratio: number, scenario: Scenario, unit = true): string {
  if (!isLatency(scenario)) return ratio.toFixed(2);
  return `${ratio >= 0 ? '+' : ''}${ratio.toFixed(2)}${unit ? ' ms p99' : ''}`;
}

/**
 * The row's test cell: the scenario, and the reference when it is not the broker's main raw side. A reference
 * named 'busbar ...' is busbar used another way (batch consume against busbar's per-message consume), one named
 * '@scope/package' a peer library (`--peers`); the others are raw clients.
 */
export function testLabel(s: Pick<ScenarioResult, 'scenario' | 'reference' | 'note'>): string {
  const named = s.reference?.startsWith('busbar') || s.reference?.startsWith('@');
  const against = named
    ? `${s.reference}${s.note ? ` (${s.note})` : ''}`
    : `raw (${s.reference}${s.note ? `, ${s.note}` : ''})`;
  if (s.reference) return `${LABEL[s.scenario]} vs ${against}`;
  return s.note ? `${LABEL[s.scenario]} vs raw ${s.note}` : LABEL[s.scenario];
}

function rate(n: number | undefined): string {
  if (n === undefined || Number.isNaN(n)) return '-';
  return n >= 10_000 ? `${(n / 1000).toFixed(1)}k` : `${Math.round(n)}`;
}

const busy = (x: { busy?: number } | undefined) => (x?.busy === undefined ? '-' : x.busy.toFixed(2));

/** Rows of [transport, test, raw, busbar, ratio, spread, raw us/msg, busbar us/msg, busy raw / busbar, control]. */
export function rows(results: readonly BrokerResult[]): string[][] {
  const out: string[][] = [];
  const blank = ['', '', '', '', '', '', ''];
  for (const r of results) {
    if (r.error) {
      out.push([r.transport, 'error', r.error.slice(0, 80), ...blank]);
      continue;
    }
    for (const s of r.scenarios) {
      if (s.skipped) {
        out.push([r.transport, testLabel(s), `skipped: ${s.skipped}`, ...blank]);
        continue;
      }
      if (s.error) {
        out.push([r.transport, testLabel(s), `error: ${s.error.slice(0, 70)}`, ...blank]);
        continue;
      }
      const lat = isLatency(s.scenario);
      const show = (x: ScenarioResult['busbar'] | undefined) =>
        x === undefined ? '-' : lat ? `${x.p50?.toFixed(2)} / ${x.p99?.toFixed(2)} ms` : `${rate(x.rate)}/s`;
      out.push([
        r.transport,
        testLabel(s),
        show(s.raw),
        show(s.busbar),
        s.ratio === undefined ? '-' : fmtRatio(s.ratio, s.scenario),
        s.spread === undefined
          ? '-'
          : `${fmtRatio(s.spread[0], s.scenario, false)}..${fmtRatio(s.spread[1], s.scenario, false)}${s.disturbed ? ` (${s.disturbed} disturbed left out)` : ''}`,
        s.raw ? s.raw.cpuUs.toFixed(1) : '-',
        s.busbar.cpuUs.toFixed(1),
        lat ? '-' : `${busy(s.raw)} / ${busy(s.busbar)}`,
        s.control === undefined ? '-' : `${s.control.toFixed(2)}${s.noisy ? ' (noisy)' : ''}`,
      ]);
    }
  }
  return out;
}

export const HEADERS = [
  'transport',
  'test',
  'raw',
  'busbar',
  'busbar/raw',
  'spread (min..max)',
  'raw us/msg',
  'busbar us/msg',
  'main thread busy raw / busbar',
  'raw/raw control',
];

export function textTable(header: readonly string[], body: readonly string[][]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...body.map((row) => (row[i] ?? '').length)));
  const line = (cells: readonly string[]) => cells.map((c, i) => (c ?? '').padEnd(widths[i] as number)).join('  ');
  return [line(header), widths.map((w) => '-'.repeat(w)).join('  '), ...body.map(line)].join('\n');
}

export function markdownTable(header: readonly string[], body: readonly string[][]): string {
  const line = (cells: readonly string[]) => `| ${cells.join(' | ')} |`;
  return [line(header), line(header.map(() => '---')), ...body.map(line)].join('\n');
}

export const RSS_HEADERS = [
  'transport',
  'backlog',
  'drain rate',
  'RSS before',
  'RSS at 10 / 50 / 90%',
  'peak RSS while draining',
  'live heap after GC at 10 / 50 / 90%',
];

export function rssRows(results: readonly RssResult[]): string[][] {
  return results.map((r) =>
    r.error
      ? [r.transport, r.backlog.toLocaleString('en-US'), r.error.slice(0, 200), '', '', '', '']
      : [
          r.transport,
          r.backlog.toLocaleString('en-US'),
          `${rate(r.drainRate)}/s`,
          `${r.baselineRssMb.toFixed(0)} MB`,
          `${(r.atMb ?? []).join(' / ')} MB`,
          `${r.peakRssMb.toFixed(0)} MB`,
          `${(r.liveMb ?? []).join(' / ')} MB`,
        ],
  );
}
