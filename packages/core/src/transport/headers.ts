/**
 * busbar's own header names on the wire. All share the reserved `busbar-`
 * prefix (users cannot set them) and are kept few and short: every header
 * costs throughput on some brokers.
 */
export const HEADER = {
  /** Message id, for brokers without a native id field. */
  id: 'busbar-id',
  /** Partition/ordering key, for brokers without a native key field. */
  key: 'busbar-key',
  /** Publish time in ms, for brokers without a native timestamp. */
  timestamp: 'busbar-ts',
  /** Attempt number of a retried message (absent means 1). */
  attempt: 'busbar-attempt',
  /** Original topic of a message in a retry queue/topic. */
  topic: 'busbar-topic',
  /** Time of the first failure, ms since the epoch; carried across retries. */
  firstFailure: 'busbar-first-failure',
  /** How many times a dead letter was re-driven; brokers that dedupe by id fold it into the dedup id. */
  redrive: 'busbar-redrive',
  dlErrorName: 'busbar-dl-error',
  dlErrorMessage: 'busbar-dl-message',
  dlErrorStack: 'busbar-dl-stack',
  dlAttempts: 'busbar-dl-attempts',
  dlTopic: 'busbar-dl-topic',
  dlGroup: 'busbar-dl-group',
  dlFirstFailure: 'busbar-dl-first-failure',
  dlLastFailure: 'busbar-dl-last-failure',
} as const;

/** The group `declareGroup` creates on every dead-letter topic; `bus.deadLetters()` and `bus.redrive()` read through it. */
export const DEAD_LETTER_READER_GROUP = 'busbar-dlq';

/** The attempt number from a `busbar-attempt` header, or 1. */
export function attemptFromHeaders(headers: Readonly<Record<string, string>>): number {
  const value = headers[HEADER.attempt];
  if (value === undefined) return 1;
  const n = Number.parseInt(value, 10);
  return Number.isFinite(n) && n >= 1 ? n : 1;
}
