#!/usr/bin/env node
// Puts the failover rows the cluster tests recorded (.failover/<broker>-<fault>.json, written by `npm test`)
// into the table of docs/production.md, between its two markers, so the table is what the tests measured.
import { existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

const dir = process.env.BUSBAR_FAILOVER_REPORT ?? '.failover';
const doc = 'docs/production.md';
const START = '<!-- failover-table:start -->';
const END = '<!-- failover-table:end -->';
if (!existsSync(dir)) {
  console.error(`failover-table: ${dir} does not exist: run the cluster tests first (npm test)`);
  process.exit(1);
}
const rows = readdirSync(dir)
  .filter((f) => f.endsWith('.json'))
  .map((f) => JSON.parse(readFileSync(join(dir, f), 'utf8')))
  .sort((a, b) => a.broker.localeCompare(b.broker) || a.fault.localeCompare(b.fault));
const cell = (text) => String(text).replace(/\|/g, '\\|');
const table = [
  '| broker | fault | confirmed | republished | lost | duplicated | longest pause (ms) | note |',
  '|---|---|---:|---:|---:|---:|---:|---|',
  ...rows
    .map((r) =>
      [r.broker, r.fault, r.confirmed, r.republished, r.lost, r.duplicated, r.pauseMs, r.note].map(cell).join(' | '),
    )
    .map((line) => `| ${line} |`),
  '',
  `Recorded: ${[...new Set(rows.map((r) => r.at.slice(0, 10)))].join(', ')}, on this repository's CI machine (2 CPUs).`,
].join('\n');
const text = readFileSync(doc, 'utf8');
const from = text.indexOf(START);
const to = text.indexOf(END);
if (from < 0 || to < from) {
  console.error(`failover-table: ${doc} has no ${START} ... ${END} markers`);
  process.exit(1);
}
writeFileSync(doc, `${text.slice(0, from + START.length)}\n${table}\n${text.slice(to)}`);
console.log(`failover-table: ${rows.length} rows into ${doc}`);
