import { type EventLoopUtilization, performance } from 'node:perf_hooks';
import type { Sample } from './harness.js';

/** Entries per publishBatch call / raw batch. */
export const BATCH = 1000;
/** In-flight publishes for the "many concurrent publish calls" test (PERFORMANCE.md: window 1000). */
export const WINDOW = 1000;
/** Consumer prefetch (unsettled messages held) on both sides. */
export const PREFETCH = 1000;
/** Batch consume test: messages per batch by default (core's default `batch.maxSize`; `--batch-size`). */
export const BATCH_SIZE = 100;
/** Batch consume test: a partial batch waits this long (only the tail of a backlog is partial). */
export const BATCH_WAIT_MS = 20;
/** busbar handler concurrency in the consume test (handlers are no-ops). */
export const CONCURRENCY = 100;
/** Requests in flight in the "request, concurrent" test; busbar responders run this many handlers at once. */
export const REQUEST_WINDOW = 100;
/** Requests a responder holds unanswered (busbar's responder prefetch is max(100, 2 x concurrency)). */
export const REQUEST_PREFETCH = 2 * REQUEST_WINDOW;
/** Every responder answers with this value, JSON-encoded (busbar replies are JSON). */
export const REPLY = 'ok';
export const REPLY_BYTES = Buffer.from(JSON.stringify(REPLY));
/** Far above any round trip here: a timeout means a lost request, which fails the block. */
export const REQUEST_TIMEOUT_MS = 30_000;

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

/** Where a timed window starts: CPU and the event loop's busy time are read against it. */
export interface Start {
  readonly cpu: NodeJS.CpuUsage;
  readonly loop: EventLoopUtilization;
}

export const start = (): Start => ({ cpu: process.cpuUsage(), loop: performance.eventLoopUtilization() });

/**
 * A throughput sample: `count` messages in `elapsedMs`, CPU since `from` per message, and the share of the
 * window since `busyFrom` the main thread was busy (event-loop utilization: near 1 means the side was bound by
 * its own JavaScript, lower means it waited on the broker or the network).
 */
export function sample(count: number, elapsedMs: number, from: Start, busyFrom: Start = from): Sample {
  const used = process.cpuUsage(from.cpu);
  return {
    rate: (count / elapsedMs) * 1000,
    cpuUs: (used.user + used.system) / count,
    busy: performance.eventLoopUtilization(busyFrom.loop).utilization,
  };
}

/**
 * Calls `fire(i)` for i = 0..count-1 at `rate` per second, in ticks of 5 ms scheduled against the start time
 * (a slow tick does not lower the rate). `fire` must not block: it starts the work and keeps its promise.
 */
export async function atRate(count: number, rate: number, fire: (i: number) => void): Promise<void> {
  const tickMs = 5;
  const perTick = Math.max(1, Math.round((rate * tickMs) / 1000));
  const start = performance.now();
  let sent = 0;
  while (sent < count) {
    const due = Math.min(count, Math.floor(((performance.now() - start) / 1000) * rate) + perTick);
    while (sent < due) fire(sent++);
    await sleep(tickMs);
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

/** Counts handled messages; `done` resolves at the `count`-th (every consume loop's end condition). */
export class Countdown {
  seen = 0;
  readonly done: Promise<void>;
  #resolve!: () => void;

  constructor(readonly count: number) {
    this.done = new Promise<void>((resolve) => {
      this.#resolve = resolve;
    });
  }

  /** `n` more messages handled. */
  add(n = 1): void {
    this.seen += n;
    if (this.seen >= this.count) this.#resolve();
  }
}
