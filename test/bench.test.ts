import { execFile } from 'node:child_process';
import { readFileSync, rmSync } from 'node:fs';
import { promisify } from 'node:util';
import { brokerAvailable, brokerUrls } from '@busbar/testing';
import { describe, expect, it } from 'vitest';

// `npm run bench` as users run it (built JavaScript; `npm test` builds first), tiny and with one round:
// this checks that the bench works and reports what it says, not how fast anything is.
const run = promisify(execFile);
const redis = await brokerAvailable('redis');

interface Sample {
  rate: number;
  cpuUs: number;
  busy?: number;
  p50?: number;
  p99?: number;
}
interface Summary {
  rate: number;
  busy?: number;
  p99?: number;
  samples: Sample[];
}
interface Scenario {
  scenario: string;
  reference?: string;
  messages: number;
  busbar: Summary;
  raw?: Summary;
  ratio?: number;
  control?: number;
  disturbed?: number;
}

const median = (values: number[]): number => {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 ? (sorted[mid] as number) : ((sorted[mid - 1] as number) + (sorted[mid] as number)) / 2;
};

async function bench(args: string[]): Promise<{ stdout: string; json: Record<string, unknown> }> {
  const { stdout } = await run(process.execPath, ['bench/dist/run.js', '--no-md', ...args], {
    env: { ...process.env, BUSBAR_BENCH_REDIS_URL: brokerUrls.redis },
    timeout: 170_000,
  });
  const file = /JSON: (\S+)/.exec(stdout)?.[1];
  expect(file, stdout).toBeDefined();
  const json = JSON.parse(readFileSync(file as string, 'utf8')) as Record<string, unknown>;
  rmSync(file as string);
  return { stdout, json };
}

describe.runIf(redis)('npm run bench', () => {
  it('measures busbar and the raw client side by side and reports busbar / mean(raw, raw control)', {
    timeout: 180_000,
  }, async () => {
    const { stdout, json } = await bench([
      '--transports',
      'memory,redis',
      '--messages',
      '400',
      '--rounds',
      '1',
      '--latency-messages',
      '60',
    ]);
    expect(stdout).not.toContain('skipping redis');
    expect(stdout).toMatch(/^redis\s+publishBatch\s/m);
    const results = json.results as { transport: string; error?: string; scenarios: Scenario[] }[];
    const byName = new Map(results.map((r) => [r.transport, r]));
    // consumeBatch twice: against the raw client, then against busbar's own per-message consume (the speed-up).
    const scenarios = [
      'publishBatch',
      'publishConcurrent',
      'consume',
      'consumeBatch',
      'consumeBatch vs busbar per-message',
      'latency',
      'requestConcurrent',
      'requestLatency',
    ];
    const latency = new Set(['latency', 'requestLatency']);
    const names = (list: Scenario[] | undefined) =>
      list?.map((s) => (s.reference ? `${s.scenario} vs ${s.reference}` : s.scenario));

    const memory = byName.get('memory');
    expect(names(memory?.scenarios)).toEqual(scenarios);
    for (const s of memory?.scenarios ?? []) {
      // memory:// has no raw client: only the batch speed-up row compares with something (busbar per message).
      if (s.reference === 'busbar per-message') expect(s.raw?.rate).toBeGreaterThan(0);
      else expect(s.raw).toBeUndefined();
      expect(s.busbar.rate).toBeGreaterThan(0);
    }
    expect(stdout).toMatch(/^redis\s+batch consume \+ ack vs busbar per-message\s/m);

    const r = byName.get('redis');
    expect(r?.error).toBeUndefined();
    expect(names(r?.scenarios)).toEqual(scenarios);
    for (const s of r?.scenarios ?? []) {
      // A round: one busbar block, one raw block and one raw control block (raw samples: the raw blocks, then
      // the controls). One round was asked for; a throughput round whose raw blocks differ by more than 10% was
      // disturbed and is run once more, and the ratio is then the undisturbed round's.
      const rounds = s.busbar.samples.length;
      const raws = (s.raw as Summary).samples;
      expect(raws).toHaveLength(2 * rounds);
      const round = (i: number) => ({
        busbar: s.busbar.samples[i] as Sample,
        raw: raws[i] as Sample,
        control: raws[rounds + i] as Sample,
      });
      if (latency.has(s.scenario)) {
        expect(rounds).toBe(1);
        const { busbar, raw, control } = round(0);
        expect(busbar.p50).toBeLessThanOrEqual(busbar.p99 as number);
        // Each side's p99 is of its rounds' messages pooled (raw with its control): with one round, busbar's is
        // the round's, and raw's lies between its two blocks' (a quantile of a union lies between the parts').
        const pooledRaw = (s.raw as Summary).p99 as number;
        expect(s.busbar.p99).toBe(busbar.p99);
        expect(pooledRaw).toBeGreaterThanOrEqual(Math.min(raw.p99 as number, control.p99 as number));
        expect(pooledRaw).toBeLessThanOrEqual(Math.max(raw.p99 as number, control.p99 as number));
        expect(s.ratio).toBeCloseTo((busbar.p99 as number) - pooledRaw, 6);
        // Every message's latency is pooled in the run, not written to the JSON.
        for (const sample of [busbar, raw, control]) expect(Object.keys(sample)).not.toContain('latencies');
        continue;
      }
      expect(s.messages).toBe(400);
      const all = Array.from({ length: rounds }, (_, i) => round(i));
      const disturbed = all.map(({ raw, control }) => Math.abs(control.rate / raw.rate - 1) > 0.1);
      // Another round only after a disturbed one.
      expect(rounds).toBe(disturbed[0] ? 2 : 1);
      const ratios = all.map(({ busbar, raw, control }) => busbar.rate / ((raw.rate + control.rate) / 2));
      const kept = ratios.filter((_, i) => !disturbed[i]);
      for (const { busbar } of all) expect(busbar.rate).toBeGreaterThan(0);
      // The main thread's busy share of each timed window (event-loop utilization), and its median per side.
      for (const sample of [...s.busbar.samples, ...raws]) {
        expect(sample.busy).toBeGreaterThan(0);
        expect(sample.busy).toBeLessThanOrEqual(1);
      }
      expect(s.busbar.busy).toBeCloseTo(median(s.busbar.samples.map((x) => x.busy as number)), 6);
      expect(s.ratio).toBeCloseTo(median(kept.length > 0 ? kept : ratios), 6);
      expect(s.disturbed).toBe(
        kept.length > 0 && kept.length < ratios.length ? ratios.length - kept.length : undefined,
      );
      expect(s.control).toBeCloseTo(median(all.map(({ raw, control }) => control.rate / raw.rate)), 6);
    }
  });

  it('--rss drains a backlog in a child process and reports its RSS and live heap', { timeout: 180_000 }, async () => {
    const { json } = await bench(['--rss', '--transports', 'memory,redis', '--rss-messages', '5000']);
    const rss = json.rss as {
      transport: string;
      backlog: number;
      drainRate: number;
      baselineRssMb: number;
      peakRssMb: number;
      liveMb?: number[];
      error?: string;
    }[];
    const memory = rss.find((x) => x.transport === 'memory');
    expect(memory?.error).toMatch(/^n\/a: /);
    const r = rss.find((x) => x.transport === 'redis');
    expect(r?.error).toBeUndefined();
    expect(r?.backlog).toBe(5000);
    expect(r?.drainRate).toBeGreaterThan(0);
    expect(r?.baselineRssMb).toBeGreaterThan(0);
    expect(r?.peakRssMb).toBeGreaterThanOrEqual(r?.baselineRssMb as number);
    expect(r?.liveMb).toHaveLength(3);
  });
});
