/** Entries per publishBatch call / raw batch. */
export const BATCH = 1000;
/** In-flight publishes for the "many concurrent publish calls" test (PERFORMANCE.md: window 1000). */
export const WINDOW = 1000;
/** Consumer prefetch (unsettled messages held) on both sides. */
export const PREFETCH = 1000;
/** busbar handler concurrency in the consume test (handlers are no-ops). */
export const CONCURRENCY = 100;

let counter = 0;
const runId = `${process.pid.toString(36)}${Date.now().toString(36)}`;

/** A group name no other block uses (Kafka group ids are global, not per topic). */
export function uniqueGroup(): string {
  counter++;
  return `g${runId}x${counter}`;
}

/** A topic name no other run uses, portable on every broker (first segment unique too: NATS streams are per first segment). */
export function uniqueTopic(): string {
  counter++;
  return `bench${runId}x${counter}.t`;
}

export const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

export function median(values: readonly number[]): number {
  if (values.length === 0) return Number.NaN;
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 ? (sorted[mid] as number) : ((sorted[mid - 1] as number) + (sorted[mid] as number)) / 2;
}

export function percentile(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return Number.NaN;
  const index = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[index] as number;
}

/** A payload of `size` bytes; the first 8 carry a send timestamp in the latency test. */
export function makePayload(size: number): Buffer {
  const buf = Buffer.alloc(Math.max(size, 8), 0x61);
  return buf;
}

/** Rejects if `promise` has not settled after `ms` (a stuck block must not hang the whole run). */
export async function deadline<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([
      promise,
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`${what} did not finish within ${ms} ms`)), ms);
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}

/** Runs async `fn` over `count` items with at most `window` in flight. */
export async function pool(count: number, window: number, fn: (i: number) => Promise<unknown>): Promise<void> {
  let next = 0;
  const worker = async () => {
    while (next < count) await fn(next++);
  };
  await Promise.all(Array.from({ length: Math.min(window, count) }, worker));
}
