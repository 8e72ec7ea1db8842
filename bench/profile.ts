/**
 * `node bench/dist/profile.js redis consume 50000 [raw | <reference>]`: runs one scenario's blocks on one side only and
 * writes a CPU profile of busbar's (or the raw client's) hot path to /tmp/prof (BUSBAR_PROF_DIR). For the
 * consume scenarios (consume, consumeBatch) only the drain is profiled, from the first message to the last.
 * Summarize with `node bench/dist/profile-summary.js /tmp/prof/<file>.cpuprofile`.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { Session } from 'node:inspector/promises';
import { join } from 'node:path';
import { BENCHES } from './benches.js';
import { type BenchConfig, block, type Scenario } from './lib/harness.js';
import type { Running, Side } from './lib/types.js';
import { BATCH_SIZE, BATCH_WAIT_MS } from './lib/util.js';

const [transport, scenario, countText, which] = process.argv.slice(2);
const bench = BENCHES[transport as string];
if (!bench) throw new Error('usage: profile.js <transport> <scenario> [count] [raw | <reference label>]');
const dir = process.env.BUSBAR_PROF_DIR ?? '/tmp/prof';
const config: BenchConfig = {
  messages: undefined,
  payload: 256,
  rounds: 1,
  latencyRate: 1000,
  latencyMessages: Number(countText ?? 1000),
  batch: { maxSize: BATCH_SIZE, maxWaitMs: BATCH_WAIT_MS },
  scenarios: [scenario as Scenario],
  log: console.log,
};
const session = new Session();
session.connect();
await session.post('Profiler.enable');
await session.post('Profiler.setSamplingInterval', { interval: 50 });

await bench.available();
// A further raw reference by its label (`pipelined` on NATS, `platformatic` on Kafka), else raw or busbar.
const references = which !== undefined && which !== 'raw' && bench.references ? await bench.references() : [];
const reference = references.find((r) => r.side.label === which)?.side;
if (which !== undefined && which !== 'raw' && reference === undefined) {
  throw new Error(
    `no raw reference '${which}' for ${transport}: ${references.map((r) => r.side.label).join(', ') || 'none'}`,
  );
}
const base = reference ?? (which === 'raw' && bench.raw ? await bench.raw() : await bench.busbar());
const onlyDrain = (scenario === 'consume' || scenario === 'consumeBatch') && bench.backlog;
// For a backlog drain, profile from the first message to the last (as the rate and CPU figures are: the group
// join before it is mostly idle, and made up 60% of a Kafka profile's samples when it was included); otherwise
// the whole block.
let profiling = false;
const begin = () => {
  if (profiling) return;
  profiling = true;
  void session.post('Profiler.start');
};
const profiled = (running: Running): Running => ({
  ...running,
  done: running.done.finally(() => {
    profiling = false;
    return stop();
  }),
});
const batched = base.consumeBatch?.bind(base);
const side: Side = onlyDrain
  ? {
      ...base,
      consume: async (target, count, onBody) =>
        profiled(
          await base.consume(target, count, (body) => {
            begin();
            onBody(body);
          }),
        ),
      ...(batched
        ? {
            consumeBatch: async (target, count, batch, onBatch) =>
              profiled(
                await batched(target, count, batch, (bodies) => {
                  begin();
                  onBatch(bodies);
                }),
              ),
          }
        : {}),
    }
  : base;
let profiles = 0;
async function stop(): Promise<void> {
  const { profile } = await session.post('Profiler.stop');
  mkdirSync(dir, { recursive: true });
  const file = join(dir, `${transport}-${scenario}-${base.label}-${process.pid}-${profiles++}.cpuprofile`);
  writeFileSync(file, JSON.stringify(profile));
  console.log(`profile: ${file}`);
}
for (let i = 0; i < 3; i++) {
  if (!onlyDrain) await session.post('Profiler.start');
  const s = await block(bench, side, scenario as Scenario, Number(countText ?? bench.defaultMessages), config);
  if (!onlyDrain) await stop();
  console.log(`${base.label} ${scenario}: ${Math.round(s.rate)}/s ${s.cpuUs.toFixed(1)} us/msg`);
}
await base.close();
await bench.shutdown?.();
process.exit(0);
