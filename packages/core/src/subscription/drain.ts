import { ClosedError } from '../errors.js';
import type { TransportSubscription } from '../transport/spi.js';
import type { Failures } from './failure.js';
import type { KeyedQueue } from './queue.js';
import type { Settlement } from './settle.js';
import type { InFlight } from './state.js';

export interface DrainParts {
  readonly native: TransportSubscription | undefined;
  readonly queue: KeyedQueue;
  readonly inFlight: ReadonlySet<InFlight>;
  readonly failures: Failures;
  readonly settle: Settlement;
  /** Resolves once no handler runs any more (or never, if one hangs: the deadline bounds it). */
  readonly idle: () => Promise<void>;
}

/** Waits for `work` until the deadline (at least `floorMs`); a late result is logged, never awaited. */
async function until(
  settle: Settlement,
  deadline: number,
  work: Promise<unknown>,
  what: string,
  floorMs = 0,
): Promise<void> {
  const budget = Math.max(deadline - Date.now(), floorMs);
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<'late'>((resolve) => {
    timer = setTimeout(() => resolve('late'), budget);
  });
  const result = await Promise.race([
    work.then(
      () => 'done' as const,
      (e: unknown) => settle.warn(`${what} failed`, e),
    ),
    late,
  ]);
  clearTimeout(timer);
  if (result === 'late') settle.warn(`${what} did not finish within the close timeout`, new Error('close timeout'));
}

/**
 * A graceful close with one deadline, broker up or down: stop intake, give back what waits, let running
 * handlers finish until the deadline, release (never ack) the ones still running, wait for the broker to
 * answer releases and acks, close the native subscription. Each broker call is abandoned (with a warning) when
 * it would run past the deadline: a broker that never answers must not hold close() up.
 */
export async function drain(parts: DrainParts, deadline: number, signal?: AbortSignal): Promise<void> {
  const { native, settle } = parts;
  if (native) await until(settle, deadline, native.stop(), 'stopping intake', 100);
  for (const d of parts.queue.drain()) settle.release(d);
  parts.failures.releaseHeld();
  if (parts.inFlight.size > 0 && !signal?.aborted) {
    let timer: NodeJS.Timeout | undefined;
    let onAbort: (() => void) | undefined;
    await Promise.race([
      parts.idle(),
      new Promise<void>((resolve) => {
        timer = setTimeout(resolve, Math.max(0, deadline - Date.now()));
        // The caller's signal ends the grace period now: running handlers are released below.
        onAbort = resolve;
        signal?.addEventListener('abort', onAbort, { once: true });
      }),
    ]);
    clearTimeout(timer);
    if (onAbort) signal?.removeEventListener('abort', onAbort);
  }
  // Handlers still running past the grace period: abort them and give their messages back, unacked.
  for (const rec of parts.inFlight) {
    rec.abandoned = true;
    rec.controller?.abort(new ClosedError('Subscription closed'));
    settle.release(rec.delivery);
    settle.emit(rec.delivery, 'released', Date.now() - rec.startedAt);
  }
  await until(settle, deadline, settle.drained(), 'settling released and acked messages', 100);
  if (native) await until(settle, deadline, native.close(), 'closing the subscription', 100);
}
