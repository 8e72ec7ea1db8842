import diagnostics from 'node:diagnostics_channel';

/**
 * Relay events on `node:diagnostics_channel` (`busbar:outbox`), for metrics
 * and logs. Nothing is built when the channel has no subscriber.
 */
export type OutboxEvent =
  | { readonly type: 'started' | 'stopped'; readonly relay: string; readonly table: string }
  | {
      readonly type: 'published';
      readonly relay: string;
      readonly table: string;
      /** Rows published and marked (or deleted) in this batch. */
      readonly count: number;
      /** Rows left for later because an older row of their key was held by another relay. */
      readonly deferred: number;
      readonly firstId: string;
      readonly lastId: string;
      readonly durationMs: number;
    }
  | {
      /** The bus refused the row for good (too large, invalid topic or header): it is marked with `error` and skipped. */
      readonly type: 'failed';
      readonly relay: string;
      readonly table: string;
      readonly id: string;
      readonly messageId: string;
      readonly error: string;
    }
  | { readonly type: 'cleaned'; readonly relay: string; readonly table: string; readonly deleted: number }
  | {
      readonly type: 'error';
      readonly relay: string;
      readonly table: string;
      /** `batch`: a publish or the database failed, the rows stay pending and are retried. */
      readonly stage: 'batch' | 'listen' | 'cleanup';
      readonly error: Error;
    };

export const OUTBOX_CHANNEL = 'busbar:outbox';
export const outboxChannel = diagnostics.channel(OUTBOX_CHANNEL);

export function emit(build: () => OutboxEvent): void {
  if (outboxChannel.hasSubscribers) outboxChannel.publish(build());
}
