/** Self and inclusive time per function, and self time per file, of a V8 .cpuprofile (`bench/profile.js`). */
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
const byId = new Map(profile.nodes.map((n) => [n.id, n]));
const fileOf = (n: Node) => n.callFrame.url.replace(/^file:\/\/\/work\/main\//, '') || '(native)';
const nameOf = (n: Node) => `${n.callFrame.functionName || '(anon)'} ${fileOf(n)}:${n.callFrame.lineNumber + 1}`;
const byFn = new Map<string, number>();
const byFile = new Map<string, number>();
for (const n of profile.nodes) {
  byFn.set(nameOf(n), (byFn.get(nameOf(n)) ?? 0) + n.hitCount);
  const short = fileOf(n).replace(/^node_modules\/([^/]+)\/.*/, 'node_modules/$1');
  byFile.set(short, (byFile.get(short) ?? 0) + n.hitCount);
}
// Inclusive: a function's own samples plus its callees', counted once per stack (recursion is not double counted).
const inclusive = new Map<string, number>();
const walk = (id: number, onStack: Set<string>): number => {
  const n = byId.get(id) as Node;
  let sum = n.hitCount;
  const name = nameOf(n);
  const fresh = !onStack.has(name);
  if (fresh) onStack.add(name);
  for (const child of n.children ?? []) sum += walk(child, onStack);
  if (fresh) {
    onStack.delete(name);
    inclusive.set(name, (inclusive.get(name) ?? 0) + sum);
  }
  return sum;
};
walk(profile.nodes[0]?.id as number, new Set());
const show = (m: Map<string, number>, n: number) =>
  [...m.entries()]
    .sort((a, b) => b[1] - a[1])
    .slice(0, n)
    .map(([k, v]) => `${((v / total) * 100).toFixed(1).padStart(5)}%  ${k}`)
    .join('\n');
const mine = new Map([...inclusive].filter(([k]) => k.includes(' packages/')));
console.log(`self time by file/package:\n${show(byFile, 20)}\n\nself time by function:\n${show(byFn, top)}`);
console.log(`\ninclusive time of busbar functions:\n${show(mine, top)}`);
