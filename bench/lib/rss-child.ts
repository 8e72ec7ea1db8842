/** Child of the --rss test: drains a prepared backlog through busbar and prints its RSS as JSON. */
import { performance } from 'node:perf_hooks';
import { BENCHES } from '../benches.js';
import type { RssChildReport } from './rss.js';

const [transport, topic, group, countText] = process.argv.slice(2);
const bench = BENCHES[transport as string];
if (!bench || !topic || !group) throw new Error('usage: rss-child <transport> <topic> <group> <count>');
const count = Number(countText);
const mb = () => Math.round(process.memoryUsage.rss() / 2 ** 20);

const side = await bench.busbar();
const baselineMb = mb();
let peakMb = baselineMb;
let seen = 0;
const marks = [0.1, 0.5, 0.9].map((f) => Math.floor(count * f));
const atMb: number[] = [];
/** Live heap after a full GC at each mark: RSS alone cannot tell garbage V8 has not collected yet from retained memory. */
const liveMb: number[] = [];
const gc = (globalThis as { gc?: () => void }).gc;
const sampler = setInterval(() => {
  peakMb = Math.max(peakMb, mb());
}, 25);
const t0 = performance.now();
const running = await side.consume({ topic, group }, count, () => {
  seen++;
  if (seen === marks[atMb.length]) {
    atMb.push(mb());
    gc?.();
    liveMb.push(Math.round(process.memoryUsage().heapUsed / 2 ** 20));
  }
});
await running.done;
const rate = (count / (performance.now() - t0)) * 1000;
clearInterval(sampler);
peakMb = Math.max(peakMb, mb());
await running.close();
await side.close();
const report: RssChildReport = { baselineMb, peakMb, atMb, liveMb, rate };
console.log(JSON.stringify(report));
process.exit(0);
