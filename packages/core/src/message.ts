import type { CloudEvent } from './inbound.js';

/** What a dead letter records about the failure, parsed from its headers. */
export interface DeadLetterInfo {
  /** Name of the error class that failed the message (e.g. `PermanentError`, `ValidationError`). */
  readonly errorName: string;
  readonly errorMessage: string;
  /** Truncated stack of the last error. */
  readonly errorStack: string;
  /** How many times the handler ran (0 when it never ran: undecodable or schema-invalid). */
  readonly attempts: number;
  readonly topic: string;
  readonly group: string;
  /** The epoch (0) when unknown: a dead letter from another writer without a usable time. */
  readonly firstFailureAt: Date;
  readonly lastFailureAt: Date;
  /** Names of the message's headers the dead-letter topic's broker refused, left out of the dead letter. */
  readonly droppedHeaders?: readonly string[];
}

/** A received message. */
export interface Message<T = unknown, Raw = unknown> {
  /** Stable across redeliveries and retries: assigned at publish, or derived from the broker. */
  readonly id: string;
  readonly topic: string;
  readonly key: string | undefined;
  readonly payload: T;
  /** The publisher's headers (busbar's own `busbar-*` headers are not included). */
  readonly headers: Readonly<Record<string, string>>;
  /** When the message was first published, as the broker or publisher recorded it. */
  readonly timestamp: Date;
  /** 1 on the first delivery, incremented on every retry and redelivery. */
  readonly attempt: number;
  /** Present on messages read from a dead-letter topic. */
  readonly deadLetter: DeadLetterInfo | undefined;
  /** The content type the message carried (native field or header), if any. */
  readonly contentType?: string | undefined;
  /**
   * The CloudEvents attributes when the message is a CloudEvent (binary mode headers of any protocol binding,
   * or structured `application/cloudevents+json`): its `id` is the message id, its `data` the payload.
   */
  readonly cloudEvent?: CloudEvent | undefined;
  /** The native record, typed per transport. */
  readonly raw: Raw;
}

/** What a handler gets besides the message. */
export interface HandlerContext {
  /** Aborted when the handler timeout elapses or the subscription is closed past its grace period. */
  readonly signal: AbortSignal;
  /** The idempotency key (`group:messageId`) when the subscription or responder has `idempotency`; else undefined. */
  readonly idempotencyKey: string | undefined;
}

export type Handler<T = unknown, Raw = unknown> = (message: Message<T, Raw>, context: HandlerContext) => unknown;
