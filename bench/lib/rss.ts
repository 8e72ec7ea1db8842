import { spawn } from 'node:child_process';
import path from 'node:path';
import type { RssResult } from './report.js';
import type { BrokerBench } from './types.js';
import { makePayload } from './util.js';

/** What rss-child.js prints as its last line. */
export interface RssChildReport {
  readonly baselineMb: number;
  readonly peakMb: number;
  /** RSS (MB) when 10%, 50% and 90% of the backlog had been handled: flat when these stay close. */
  readonly atMb: readonly number[];
  /** Heap in use after a full GC at the same marks. */
  readonly liveMb: readonly number[];
  readonly rate: number;
}

/**
 * Fills a backlog of `messages` through busbar (in this process), then drains
 * it in a fresh child process and reports the child's peak RSS: the child
 * holds only what the subscription prefetches, so its memory must not grow
 * with the backlog.
 */
export async function runRss(
  bench: BrokerBench,
  messages: number,
  payloadSize: number,
  distDir: string,
): Promise<RssResult> {
  const base = { transport: bench.name, backlog: messages };
  if (!bench.backlog || bench.name === 'memory') {
    const why =
      bench.name === 'memory'
        ? 'in-process broker: the backlog is the heap'
        : "not measured: an MQTT group's backlog sits in per-member session queues (max_queued_messages); consume is measured end to end";
    console.log(`== ${bench.name}: skipped (${why})`);
    return { ...base, drainRate: 0, baselineRssMb: 0, peakRssMb: 0, error: `n/a: ${why}` };
  }
  const side = await bench.busbar();
  const target = await side.fresh();
  try {
    console.log(`== ${bench.name}: filling a backlog of ${messages} messages`);
    const t0 = Date.now();
    await side.publishBatch(target, messages, makePayload(payloadSize));
    console.log(`   filled in ${((Date.now() - t0) / 1000).toFixed(1)} s; draining in a child process`);
    const report = await child(distDir, bench.name, target.topic, target.group, messages);
    console.log(
      `   drained at ${Math.round(report.rate)}/s; RSS ${report.baselineMb} MB before, at 10/50/90%: ${report.atMb.join(' / ')} MB, peak ${report.peakMb} MB; live heap after GC ${report.liveMb.join(' / ')} MB`,
    );
    return {
      ...base,
      drainRate: report.rate,
      baselineRssMb: report.baselineMb,
      peakRssMb: report.peakMb,
      atMb: report.atMb,
      liveMb: report.liveMb,
    };
  } catch (error) {
    return { ...base, drainRate: 0, baselineRssMb: 0, peakRssMb: 0, error: String((error as Error).message ?? error) };
  } finally {
    await side.drop(target).catch(() => undefined);
    await side.close().catch(() => undefined);
  }
}

function child(
  distDir: string,
  transport: string,
  topic: string,
  group: string,
  count: number,
): Promise<RssChildReport> {
  return new Promise((resolve, reject) => {
    const proc = spawn(
      process.execPath,
      ['--expose-gc', path.join(distDir, 'lib', 'rss-child.js'), transport, topic, group, String(count)],
      {
        stdio: ['ignore', 'pipe', 'inherit'],
      },
    );
    let out = '';
    proc.stdout.on('data', (chunk: Buffer) => {
      out += chunk.toString();
    });
    proc.once('error', reject);
    proc.once('exit', (code) => {
      const line = out.trim().split('\n').pop() ?? '';
      try {
        if (code !== 0) throw new Error(`rss child exited with ${code}: ${line}`);
        resolve(JSON.parse(line) as RssChildReport);
      } catch (error) {
        reject(error);
      }
    });
  });
}
