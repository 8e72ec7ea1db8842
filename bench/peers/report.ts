import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import type { BenchConfig } from '../lib/harness.js';
import { type BrokerResult, HEADERS, type Machine, markdownTable } from '../lib/report.js';

const START = '<!-- peers:start -->';
const END = '<!-- peers:end -->';

/** Replaces the measured section of PEERS.md (between its markers); the method above it is hand-written and kept. */
export function writePeersMarkdown(
  file: string,
  run: { started: Date; machine: Machine; commit: string; config: BenchConfig; results: readonly BrokerResult[] },
  table: string[][],
): void {
  const m = run.machine;
  const versions = run.results.map((r) => `${r.transport}: ${r.version}`).join('; ');
  const section = `${START}
## Measured

Run ${run.started.toISOString()}, commit \`${run.commit}\`, with \`npm run bench -- --peers --rounds ${run.config.rounds}${run.config.messages ? ` --messages ${run.config.messages}` : ''}\`
on ${m.cpu}, ${m.cores} cores, Node ${m.node}, load average at start ${m.loadAverage.join(' ')}. Brokers: ${versions}.
In each row "raw" is the peer, "busbar/raw" is busbar / the peer.

${markdownTable(HEADERS, table)}
${END}`;
  const old = existsSync(file) ? readFileSync(file, 'utf8') : '# busbar against its peers\n';
  const re = new RegExp(`${START}[\\s\\S]*${END}`);
  writeFileSync(file, re.test(old) ? old.replace(re, section) : `${old.trimEnd()}\n\n${section}\n`);
}
