/**
 * `node bench/dist/compare.js <A.json> [B.json] [--md]`: two bench runs side by side, per row busbar/raw of
 * each with its spread over rounds and the difference. B defaults to the newest run in bench/results.
 */
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { COMPARE_HEADERS, compareRows, latestRun, loadRun, runTitle } from './lib/compare.js';
import { markdownTable, textTable } from './lib/report.js';

const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: { md: { type: 'boolean', default: false }, help: { type: 'boolean', default: false } },
});
if (values.help || positionals.length === 0 || positionals.length > 2) {
  console.log('usage: node bench/dist/compare.js <A.json> [B.json] [--md]   (B: the newest run in bench/results)');
  process.exit(values.help ? 0 : 2);
}
const resultsDir = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', 'results');
const fileA = positionals[0] as string;
const fileB = positionals[1] ?? latestRun(resultsDir, fileA);
if (!fileB) {
  console.error(`no other run in ${resultsDir} to compare with`);
  process.exit(2);
}
const a = loadRun(fileA);
const b = loadRun(fileB);
console.log(`A: ${runTitle(a)}  ${fileA}\nB: ${runTitle(b)}  ${fileB}\n`);
const body = compareRows(a, b);
console.log(values.md ? markdownTable(COMPARE_HEADERS, body) : textTable(COMPARE_HEADERS, body));
