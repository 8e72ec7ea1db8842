/**
 * Close-time commands (CLIENT UNBLOCK, XPENDING, QUIT) are answered by a healthy Redis at once; one that is
 * unreachable or went silent never answers them, and ioredis keeps such commands queued. Each wait is
 * bounded by one step, and once one went unanswered the transport and all its subscriptions stop waiting
 * for Redis, so `close()` stays well within `closeTimeoutMs`.
 */
export const CLOSE_STEP_MS = 1_000;

/** Shared by a transport and its subscriptions. */
export class CloseState {
  /** Redis did not answer a close-time command (or is not connected): send and wait for nothing more. */
  silent = false;
}
