/**
 * `node --cpu-prof --cpu-prof-dir=/tmp/prof bench/dist/profile.js redis consume 50000 [raw]`:
 * runs one scenario's blocks on one side only, for a CPU profile of busbar's (or the raw client's) hot path.
 * Summarize with `node bench/dist/profile-summary.js /tmp/prof/<file>.cpuprofile`.
 */
import { BENCHES } from './benches.js';
import { type BenchConfig, block, type Scenario } from './lib/harness.js';

const [transport, scenario, countText, which] = process.argv.slice(2);
const bench = BENCHES[transport as string];
if (!bench) throw new Error('usage: profile.js <transport> <scenario> [count] [raw]');
const config: BenchConfig = {
  messages: undefined,
  payload: 256,
  rounds: 1,
  latencyRate: 1000,
  latencyMessages: Number(countText ?? 1000),
  scenarios: [scenario as Scenario],
  log: console.log,
};
await bench.available();
const side = which === 'raw' && bench.raw ? await bench.raw() : await bench.busbar();
for (let i = 0; i < 3; i++) {
  const s = await block(bench, side, scenario as Scenario, Number(countText ?? bench.defaultMessages), config);
  console.log(`${side.label} ${scenario}: ${Math.round(s.rate)}/s ${s.cpuUs.toFixed(1)} us/msg`);
}
await side.close();
await bench.shutdown?.();
process.exit(0);
