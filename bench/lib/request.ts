import { performance } from 'node:perf_hooks';
import type { BenchConfig, Sample, Scenario } from './harness.js';
import type { BrokerBench, RequestReplySide, Side, Target } from './types.js';
import { atRate, deadline, makePayload, percentile, pool, REPLY, REQUEST_WINDOW, sample, start } from './util.js';

const BLOCK_TIMEOUT_MS = 180_000;

export function isRequestScenario(scenario: Scenario): scenario is 'requestConcurrent' | 'requestLatency' {
  return scenario === 'requestConcurrent' || scenario === 'requestLatency';
}

/** A wrong reply (another block's, or a misrouted one) must fail the block, not be counted as a round trip. */
function check(reply: unknown): void {
  if (reply !== REPLY) throw new Error(`unexpected reply ${JSON.stringify(reply)?.slice(0, 80)}`);
}

/**
 * One block of round trips on a fresh request topic with one responder in its group (same process, so the CPU
 * per round trip covers requester and responder). The first round trip is not measured: requesters that set up
 * their reply subscription or stream at the first request do so there.
 */
export async function requestBlock(
  bench: BrokerBench,
  side: Side,
  scenario: 'requestConcurrent' | 'requestLatency',
  count: number,
  config: BenchConfig,
): Promise<Sample> {
  const rr = side.requestReply;
  if (!rr) throw new Error(`${bench.name} ${side.label} has no request/reply`);
  const what = `${bench.name} ${side.label} ${scenario}`;
  const payload = makePayload(config.payload);
  const target = await rr.fresh();
  try {
    const responder = await deadline(rr.serve(target), BLOCK_TIMEOUT_MS, `${what} serve`);
    try {
      check(await deadline(rr.request(target, payload), BLOCK_TIMEOUT_MS, `${what} first request`));
      if (scenario === 'requestConcurrent') {
        const from = start();
        const t0 = performance.now();
        await deadline(
          pool(count, REQUEST_WINDOW, async () => check(await rr.request(target, payload))),
          BLOCK_TIMEOUT_MS,
          what,
        );
        return sample(count, performance.now() - t0, from);
      }
      return await atFixedRate(rr, target, payload, config.latencyMessages, config.latencyRate, what);
    } finally {
      await responder.close();
    }
  } finally {
    await rr.drop(target).catch((error) => config.log(`  (cleanup failed: ${String(error)})`));
  }
}

/** Requests at `rate` per second, each timed from the call to its reply: p50/p99 and CPU per round trip. */
async function atFixedRate(
  rr: RequestReplySide,
  target: Target,
  payload: Buffer,
  count: number,
  rate: number,
  what: string,
): Promise<Sample> {
  const times = new Array<number>(count);
  const pending: Promise<void>[] = [];
  const cpu = process.cpuUsage();
  await atRate(count, rate, (i) => {
    const t0 = performance.now();
    pending.push(
      rr.request(target, payload).then((reply) => {
        times[i] = performance.now() - t0;
        check(reply);
      }),
    );
  });
  await deadline(Promise.all(pending), BLOCK_TIMEOUT_MS, what);
  const used = process.cpuUsage(cpu);
  times.sort((a, b) => a - b);
  return {
    rate,
    cpuUs: (used.user + used.system) / count,
    p50: percentile(times, 50),
    p99: percentile(times, 99),
    latencies: times,
  };
}
