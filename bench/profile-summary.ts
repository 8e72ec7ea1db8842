/** Self time per function and per file of a V8 .cpuprofile (from `node --cpu-prof`). */
import { readFileSync } from 'node:fs';

interface Node {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  hitCount: number;
  children?: number[];
}
const profile = JSON.parse(readFileSync(process.argv[2] as string, 'utf8')) as { nodes: Node[] };
const top = Number(process.argv[3] ?? 30);
const total = profile.nodes.reduce((sum, n) => sum + n.hitCount, 0);
const byFn = new Map<string, number>();
const byFile = new Map<string, number>();
for (const n of profile.nodes) {
  const file = n.callFrame.url.replace(/^file:\/\/\/work\/main\//, '').replace(/^node:/, 'node:') || '(native)';
  const fn = `${n.callFrame.functionName || '(anon)'} ${file}:${n.callFrame.lineNumber + 1}`;
  byFn.set(fn, (byFn.get(fn) ?? 0) + n.hitCount);
  const short = file.replace(/^node_modules\/([^/]+)\/.*/, 'node_modules/$1');
  byFile.set(short, (byFile.get(short) ?? 0) + n.hitCount);
}
const show = (m: Map<string, number>, n: number) =>
  [...m.entries()]
    .sort((a, b) => b[1] - a[1])
    .slice(0, n)
    .map(([k, v]) => `${((v / total) * 100).toFixed(1).padStart(5)}%  ${k}`)
    .join('\n');
console.log(`self time by file/package:\n${show(byFile, 20)}\n\nself time by function:\n${show(byFn, top)}`);
