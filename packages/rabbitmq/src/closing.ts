/**
 * Close-time round trips (basic.cancel, channel.close, connection.close) are answered by a healthy broker
 * at once; a broker that went silent (network blackhole, hung node) never answers them, and amqplib only
 * notices after two missed heartbeats. Each such wait is bounded by one step: a broker that missed it is
 * taken as silent, and the rest of the close no longer waits for it.
 */
export const CLOSE_STEP_MS = 1_000;

/** True if `promise` settled within `ms` (its outcome does not matter at close); its late failure is ignored. */
export function settledWithin(promise: Promise<unknown>, ms: number): Promise<boolean> {
  if (ms <= 0) {
    promise.catch(() => undefined);
    return Promise.resolve(false);
  }
  return new Promise<boolean>((resolve) => {
    // No deadline (Infinity) waits for the promise itself: setTimeout would read it as 1 ms.
    const timer = Number.isFinite(ms) ? setTimeout(() => resolve(false), Math.min(ms, 2_147_483_647)) : undefined;
    promise.then(
      () => {
        clearTimeout(timer);
        resolve(true);
      },
      () => {
        clearTimeout(timer);
        resolve(true);
      },
    );
  });
}
