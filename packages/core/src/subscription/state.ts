import type { CloudEvent } from '../inbound.js';
import type { Logger } from '../logger.js';
import type { HandlerContext } from '../message.js';
import type { Delivery, OutgoingRecord } from '../transport/spi.js';

/** What a subscription needs from its bus. */
export interface SubscriptionHost {
  readonly system: string;
  readonly logger: Logger;
  readonly closeTimeoutMs: number;
  /** Where this subscription's dead letters go (named after the subscription, checked at subscribe); undefined when off. */
  readonly deadLetterTopic: string | undefined;
  /** The largest record the transport takes (dead letters grow by their metadata and are trimmed to fit). */
  maxRecordBytes(): number;
  /** Declares the dead-letter reader group, then publishes the record with confirmation. */
  publishDeadLetter(record: OutgoingRecord): Promise<void>;
}

/** A running subscription, returned by `bus.subscribe`. */
export interface Subscription {
  readonly topic: string;
  readonly group: string | undefined;
  /** Stop intake, let in-flight handlers finish (up to the close timeout), settle them. Idempotent. */
  close(): Promise<void>;
  readonly closed: boolean;
  /** `await using sub = await bus.subscribe(...)` closes it when the scope ends. */
  [Symbol.asyncDispose](): Promise<void>;
}

export interface SubscriptionStats {
  readonly topic: string;
  readonly group: string | undefined;
  readonly state: 'running' | 'closing' | 'closed';
  readonly inFlight: number;
  readonly queued: number;
}

/** One delivery between the queue and its settlement. */
export interface InFlight {
  readonly delivery: Delivery;
  readonly startedAt: number;
  controller: AbortController | undefined;
  /** Rejects the handler's promise early: set while an async handler runs, used by the timeout sweeper. */
  fail: ((error: unknown) => void) | undefined;
  /** Released at close while its handler still ran: its late result must not settle anything. */
  abandoned: boolean;
  /** Set when the message is a CloudEvent: its id is the message id. */
  cloudEvent: CloudEvent | undefined;
  /** A batch subscription's: the message waiting for its batch (batch.ts), and whether it is settled. */
  batched: unknown;
  finished: boolean;
}

export function inFlight(delivery: Delivery): InFlight {
  return {
    delivery,
    startedAt: Date.now(),
    controller: undefined,
    fail: undefined,
    abandoned: false,
    cloudEvent: undefined,
    batched: undefined,
    finished: false,
  };
}

/**
 * What a handler returns to leave its message unsettled until the subscription closes, then release it (core's
 * own re-drive uses it for dead letters it must not move yet). Not public API.
 */
export const HOLD = Symbol('busbar.hold');

/** The handler's second argument. */
export class Context implements HandlerContext {
  readonly #rec: InFlight;
  readonly idempotencyKey: string | undefined;
  constructor(rec: InFlight, idempotencyKey: string | undefined) {
    this.#rec = rec;
    this.idempotencyKey = idempotencyKey;
  }
  /** For core's batcher: the in-flight record behind a handler call. */
  static record(context: HandlerContext): InFlight | undefined {
    return context instanceof Context ? context.#rec : undefined;
  }
  /** For core's own handlers (re-drive): the delivery behind the message, with its body and every header. */
  static delivery(context: HandlerContext): Delivery | undefined {
    return context instanceof Context ? context.#rec.delivery : undefined;
  }
  /** Created on first use: most handlers never look at it, and an AbortController per message costs. */
  get signal(): AbortSignal {
    this.#rec.controller ??= new AbortController();
    return this.#rec.controller.signal;
  }
}
