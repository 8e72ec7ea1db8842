import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

/** The built CLI: tests run it exactly as an operator does (`npm test` builds it first with `tsc -b`). */
export const BIN = fileURLToPath(new URL('../dist/bin.js', import.meta.url));

export function assertBuilt(): void {
  if (!existsSync(BIN)) throw new Error(`${BIN} is missing: build it with \`npx tsc -b packages/cli\``);
}

export interface Result {
  readonly code: number | null;
  readonly stdout: string;
  readonly stderr: string;
}

export interface RunOptions {
  readonly env?: Record<string, string | undefined>;
  readonly input?: string;
  readonly timeoutMs?: number;
}

/** Env without BUSBAR_URL from the developer's shell, so a test's URL is always the one it passes. */
function environment(extra: Record<string, string | undefined> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env, BUSBAR_URL: undefined, ...extra };
  for (const key of Object.keys(env)) if (env[key] === undefined) delete env[key];
  return env;
}

export function start(args: readonly string[], options: RunOptions = {}): ChildProcess {
  return spawn(process.execPath, [BIN, ...args], { env: environment(options.env), stdio: ['pipe', 'pipe', 'pipe'] });
}

/** Runs `busbar <args>` to completion (killed after `timeoutMs`, which fails the test through the exit code). */
export function run(args: readonly string[], options: RunOptions = {}): Promise<Result> {
  const child = start(args, options);
  let stdout = '';
  let stderr = '';
  child.stdout?.on('data', (chunk: Buffer) => {
    stdout += chunk.toString();
  });
  child.stderr?.on('data', (chunk: Buffer) => {
    stderr += chunk.toString();
  });
  child.stdin?.end(options.input ?? '');
  const timer = setTimeout(() => child.kill('SIGKILL'), options.timeoutMs ?? 25_000);
  return new Promise((resolve) => {
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

/** Collects a running child's output; `until` resolves once `predicate` holds (or rejects after `timeoutMs`). */
export function watch(child: ChildProcess): {
  output: () => { stdout: string; stderr: string };
  until: (predicate: (out: { stdout: string; stderr: string }) => boolean, timeoutMs?: number) => Promise<void>;
  exit: Promise<number | null>;
} {
  const out = { stdout: '', stderr: '' };
  child.stdout?.on('data', (chunk: Buffer) => {
    out.stdout += chunk.toString();
  });
  child.stderr?.on('data', (chunk: Buffer) => {
    out.stderr += chunk.toString();
  });
  const exit = new Promise<number | null>((resolve) => child.on('close', (code) => resolve(code)));
  const until = async (predicate: (o: typeof out) => boolean, timeoutMs = 20_000) => {
    const deadline = Date.now() + timeoutMs;
    while (!predicate(out)) {
      if (Date.now() > deadline) throw new Error(`timed out; stdout: ${out.stdout}\nstderr: ${out.stderr}`);
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  };
  return { output: () => out, until, exit };
}
