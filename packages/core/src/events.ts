import diagnostics from 'node:diagnostics_channel';

/**
 * Instrumentation through `node:diagnostics_channel`: tracing and metrics
 * packages subscribe to these, so core depends on neither. Nothing is built
 * for a channel that has no subscriber.
 *
 * - `busbar:publish` (tracing channel): context {@link PublishContext}. A
 *   subscriber of `start` may add headers (e.g. `traceparent`) to each message.
 * - `busbar:process` (tracing channel): context {@link ProcessContext}, around a handler run.
 * - `busbar:settled`: {@link SettledEvent}, once per delivery outcome (acked, retried, dead-lettered, ...).
 * - `busbar:connection`: {@link ConnectionEvent}.
 */
export interface PublishContext {
  readonly system: string;
  readonly topic: string;
  readonly messages: ReadonlyArray<{
    readonly id: string;
    readonly key: string | undefined;
    headers: Record<string, string>;
  }>;
}

export interface ProcessContext {
  readonly system: string;
  readonly topic: string;
  readonly group: string | undefined;
  readonly message: {
    readonly id: string;
    readonly key: string | undefined;
    readonly headers: Readonly<Record<string, string>>;
    readonly attempt: number;
    readonly raw: unknown;
  };
}

/**
 * `dead-letter-failed`: the broker refused the dead-letter write; the message waits (with backoff) and the
 * write is tried again, so a `dead-lettered` event for the same message follows once the broker takes it.
 */
export type Outcome =
  | 'acked'
  | 'duplicate'
  | 'retried'
  | 'dead-lettered'
  | 'dead-letter-failed'
  | 'dropped'
  | 'released';

export interface SettledEvent {
  readonly system: string;
  readonly topic: string;
  readonly group: string | undefined;
  readonly id: string;
  readonly attempt: number;
  readonly outcome: Outcome;
  /** Handler time in ms (0 when the handler did not run). */
  readonly durationMs: number;
  readonly error?: Error;
  readonly delayMs?: number;
  readonly deadLetterTopic?: string;
}

export interface ConnectionEvent {
  readonly system: string;
  readonly connection: string;
  /**
   * `closed`: closed on purpose (its subscription or the bus closed) and gone from `bus.health()`; nothing is
   * reported for it afterwards, so a metric keeping its last state should drop it rather than show it down.
   */
  readonly state: 'connecting' | 'up' | 'reconnecting' | 'down' | 'closed';
  /** Unique to the bus within the process: two buses of one transport have connections of the same names. */
  readonly bus: number;
  readonly error?: string;
}

export const channels = {
  publish: diagnostics.tracingChannel<unknown, PublishContext>('busbar:publish'),
  process: diagnostics.tracingChannel<unknown, ProcessContext>('busbar:process'),
  settled: diagnostics.channel('busbar:settled'),
  connection: diagnostics.channel('busbar:connection'),
} as const;
