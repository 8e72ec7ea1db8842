/**
 * Scale (b): many subscriptions on one bus, measured in a fresh child process (its own baseline, `--expose-gc`,
 * its own sockets to count). The objects the subscriptions created are deleted afterwards.
 */
import { spawn } from 'node:child_process';
import path from 'node:path';
import { cleanup, manyTopics, RUN, type ScaleBroker } from './scale-brokers.js';
import type { ManyReport, ManySpec } from './scale-many-child.js';

export interface ManyResult extends Partial<ManyReport> {
  readonly broker: ScaleBroker;
  readonly subscriptions: number;
  /** Subscribe calls in flight at once. */
  readonly window: number;
  readonly cleanupMs?: number;
  readonly error?: string;
}

function child(distDir: string, spec: ManySpec): Promise<ManyReport> {
  return new Promise((resolve, reject) => {
    const proc = spawn(
      process.execPath,
      ['--expose-gc', path.join(distDir, 'lib', 'scale-many-child.js'), JSON.stringify(spec)],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    let out = '';
    let err = '';
    proc.stdout.on('data', (chunk: Buffer) => {
      out += chunk.toString();
    });
    proc.stderr.on('data', (chunk: Buffer) => {
      err += chunk.toString();
    });
    proc.once('error', reject);
    proc.once('exit', (code) => {
      const line = out.trim().split('\n').pop() ?? '';
      try {
        // The child's uncaught error: its first `...Error: ` line says what failed.
        const why = /^\w*Error: .*$/m.exec(err)?.[0] ?? line;
        if (code !== 0) throw new Error(`exited with ${code}: ${why.slice(0, 300)}`);
        resolve(JSON.parse(line) as ManyReport);
      } catch (error) {
        reject(error);
      }
    });
  });
}

export async function runMany(
  broker: ScaleBroker,
  url: string,
  count: number,
  window: number,
  distDir: string,
): Promise<ManyResult> {
  const prefix = `${RUN}s${window}`;
  const group = `${RUN}s${window}`;
  const base = { broker, subscriptions: count, window };
  let result: ManyResult;
  try {
    result = { ...base, ...(await child(distDir, { broker, url, prefix, count, group, window })) };
  } catch (error) {
    result = { ...base, error: String((error as Error).message ?? error) };
  }
  const t0 = Date.now();
  try {
    await cleanup(broker, url, prefix, manyTopics(prefix, count), [group]);
    return { ...result, cleanupMs: Date.now() - t0 };
  } catch (error) {
    return { ...result, error: `${result.error ?? ''} cleanup failed: ${String(error)}`.trim() };
  }
}
