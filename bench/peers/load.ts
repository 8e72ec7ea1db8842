import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

/**
 * The peers live in bench/peers/node_modules, installed apart from the workspace (their peer ranges conflict with
 * the workspace's: moleculer 0.14 wants pino <= 9, both peers amqplib 0.10): `npm install --prefix bench/peers`.
 * Loaded by path, so the root build needs none of them; each peer file types the few calls it makes.
 */
const here = path.dirname(fileURLToPath(import.meta.url));
// Compiled to bench/dist/peers/; the package.json stays in bench/peers/.
export const peersDir = path.resolve(here, '..', '..', 'peers');
const requirePeer = createRequire(path.join(peersDir, 'package.json'));

export function peersInstalled(): boolean {
  return existsSync(path.join(peersDir, 'node_modules', 'moleculer'));
}

/** A CommonJS peer (moleculer, @moleculer/channels). */
export function requireModule<T>(name: string): T {
  return requirePeer(name) as T;
}

/** An ES module peer (@message-queue-toolkit/*): its entry file found through its package.json. */
export async function importModule<T>(name: string): Promise<T> {
  const pkgFile = requirePeer.resolve(`${name}/package.json`);
  const pkg = requirePeer(pkgFile) as { exports?: { '.'?: string | { import?: string } }; main?: string };
  const dot = pkg.exports?.['.'];
  const entry = (typeof dot === 'string' ? dot : dot?.import) ?? pkg.main ?? 'index.js';
  return (await import(pathToFileURL(path.join(path.dirname(pkgFile), entry)).href)) as T;
}
