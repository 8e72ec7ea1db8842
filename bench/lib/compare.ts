import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import type { ScenarioResult } from './harness.js';
import { type BrokerResult, fmtRatio, testLabel } from './report.js';

/** What `bench/results/<timestamp>.json` holds (the parts a comparison reads). */
export interface RunJson {
  readonly started: string;
  readonly commit: string;
  readonly results: readonly BrokerResult[];
}

export function loadRun(file: string): RunJson {
  const json = JSON.parse(readFileSync(file, 'utf8')) as Partial<RunJson>;
  if (!Array.isArray(json.results))
    throw new Error(`${file} is not a bench run (no results; --rss runs are not compared)`);
  return { started: String(json.started), commit: String(json.commit), results: json.results };
}

/** The newest run JSON in `dir` other than `except` (throughput runs only, not rss-*.json). */
export function latestRun(dir: string, except?: string): string | undefined {
  const files = readdirSync(dir)
    .filter((f) => /^\d{4}-.*\.json$/.test(f))
    .map((f) => path.join(dir, f))
    .filter((f) => except === undefined || path.resolve(f) !== path.resolve(except))
    .sort();
  return files.at(-1);
}

export const COMPARE_HEADERS = ['transport', 'test', 'run A', 'run B', 'B - A', 'busbar us/msg A / B'];

function ratioCell(s: ScenarioResult | undefined): string {
  if (!s) return 'absent';
  if (s.skipped) return 'skipped';
  if (s.error || s.ratio === undefined) return s.error ? 'error' : '-';
  const spread = s.spread
    ? ` (${fmtRatio(s.spread[0], s.scenario, false)}..${fmtRatio(s.spread[1], s.scenario, false)})`
    : '';
  return `${fmtRatio(s.ratio, s.scenario)}${spread}`;
}

/**
 * One row per transport and test present in either run: busbar/raw of each (with its spread over rounds), the
 * difference (B - A; for latency rows a difference of p99 overheads in ms) and busbar's CPU per message.
 */
export function compareRows(a: RunJson, b: RunJson): string[][] {
  const key = (transport: string, s: ScenarioResult) => `${transport}\u0000${s.scenario}\u0000${s.reference ?? ''}`;
  const index = (run: RunJson) => {
    const map = new Map<string, { transport: string; s: ScenarioResult }>();
    for (const r of run.results)
      for (const s of r.scenarios) map.set(key(r.transport, s), { transport: r.transport, s });
    return map;
  };
  const left = index(a);
  const right = index(b);
  // B's order (usually the newer run), then what only A has.
  const keys = [...right.keys(), ...[...left.keys()].filter((k) => !right.has(k))];
  return keys.map((k) => {
    const x = left.get(k)?.s;
    const y = right.get(k)?.s;
    const any = (left.get(k) ?? right.get(k)) as { transport: string; s: ScenarioResult };
    const diff =
      x?.ratio !== undefined && y?.ratio !== undefined && !x.error && !y.error
        ? `${y.ratio >= x.ratio ? '+' : ''}${(y.ratio - x.ratio).toFixed(2)}`
        : '-';
    const cpu = (s: ScenarioResult | undefined) =>
      s && !s.error && !s.skipped && Number.isFinite(s.busbar.cpuUs) ? s.busbar.cpuUs.toFixed(1) : '-';
    return [any.transport, testLabel(any.s), ratioCell(x), ratioCell(y), diff, `${cpu(x)} / ${cpu(y)}`];
  });
}

export function runTitle(run: RunJson): string {
  return `${run.started} (commit ${run.commit})`;
}
