import { backoffDelay, type RetryPolicy } from '@busbar/core';
import { ErrorCode, NatsError } from 'nats';
import { apiErrorCode } from './errors.js';

/**
 * After this long without an answer, a JetStream API call is sent once more beside the one still waiting. An
 * answer can be late (a cluster electing a leader answers after seconds) or lost for good (the server the
 * request went through restarted, or its route to the meta leader was not up yet): the first answer of either
 * request counts, so a late one is not thrown away and a lost one is not waited out.
 */
const HEDGE_MS = 5_000;

/** JetStream API error: the cluster has no meta leader right now (an election is running). */
const CLUSTER_UNAVAILABLE = 10008;

const PAUSE: RetryPolicy = {
  maxAttempts: Number.MAX_SAFE_INTEGER,
  initialDelayMs: 100,
  maxDelayMs: 2_000,
  multiplier: 2,
  jitter: 0.5,
};

/**
 * Runs an idempotent JetStream API call (info; add or update with the config busbar wants) within
 * `budgetMs`: one more request every {@link HEDGE_MS} while none has answered, and after a growing pause when
 * one failed for timing (a timeout, the cluster between meta leaders). Settles with the first answer, an error
 * that is not about timing, or, once the budget is spent, the last error (a `TIMEOUT` when none came); requests
 * still out then are left to their own timeout (nats.js' `timeout` option, the same budget).
 */
export function hedgeApi<T>(budgetMs: number, call: () => Promise<T>): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    let settled = false;
    let failures = 0;
    let last: unknown;
    let next: NodeJS.Timeout | undefined;
    const finish = (done: () => void) => {
      if (settled) return;
      settled = true;
      clearTimeout(next);
      clearTimeout(end);
      done();
    };
    const end = setTimeout(() => finish(() => reject(last ?? NatsError.errorForCode(ErrorCode.Timeout))), budgetMs);
    const send = () => {
      if (settled) return;
      next = setTimeout(send, HEDGE_MS);
      Promise.resolve()
        .then(call)
        .then(
          (value) => finish(() => resolve(value)),
          (error: unknown) => {
            if (settled) return;
            if (!transient(error)) {
              finish(() => reject(error));
              return;
            }
            last = error;
            clearTimeout(next);
            next = setTimeout(send, backoffDelay(PAUSE, ++failures));
          },
        );
    };
    send();
  });
}

function transient(error: unknown): boolean {
  return (
    (error as { code?: unknown } | undefined)?.code === ErrorCode.Timeout || apiErrorCode(error) === CLUSTER_UNAVAILABLE
  );
}
