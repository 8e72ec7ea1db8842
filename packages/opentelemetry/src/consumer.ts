import type { ProcessContext, SettledEvent } from '@busbar/core';
import {
  type Attributes,
  type Context,
  propagation,
  ROOT_CONTEXT,
  type Span,
  SpanKind,
  SpanStatusCode,
  type Tracer,
  trace,
} from '@opentelemetry/api';
import { ATTR, nativeAttributes } from './attributes.js';
import { endSpan, errorType, guard, markError, report } from './safe.js';

/** One handler run, from the `busbar:process` start until its `busbar:settled` event. */
export interface ProcessState {
  readonly start: number;
  readonly attributes: Attributes;
  span: Span | undefined;
  handlerEnd: number | undefined;
  /** The handler's own error is already on the span. */
  errored: boolean;
  ended: boolean;
}

export interface ConsumerTracingOptions {
  readonly consumerParent: 'parent' | 'link';
  readonly conversationIdHeader: string | undefined;
  readonly settleTimeoutMs: number;
}

/** Longest a span may stay open waiting for its handler and settlement; a safety net, not a timeout. */
const MAX_OPEN_MS = 60 * 60_000;

function settleKey(system: string, topic: string, group: string | undefined, id: string, attempt: number): string {
  return `${system}\u0000${topic}\u0000${group ?? ''}\u0000${id}\u0000${attempt}`;
}

export function processAttributes(ctx: ProcessContext, conversationIdHeader: string | undefined): Attributes {
  const attributes: Attributes = {
    [ATTR.system]: ctx.system,
    [ATTR.destination]: ctx.topic,
    [ATTR.operationType]: 'process',
    [ATTR.operationName]: 'process',
    [ATTR.messageId]: ctx.message.id,
    [ATTR.attempt]: ctx.message.attempt,
  };
  if (ctx.group !== undefined) attributes[ATTR.group] = ctx.group;
  if (ctx.message.key !== undefined && ctx.system === 'kafka') attributes[ATTR.kafkaKey] = ctx.message.key;
  const conversation = conversationIdHeader ? ctx.message.headers[conversationIdHeader] : undefined;
  if (conversation !== undefined) attributes[ATTR.conversationId] = conversation;
  nativeAttributes(ctx.system, ctx.message.raw, attributes);
  return attributes;
}

/**
 * Consumer spans. A span starts with the handler and stays open until core
 * reports how the delivery was settled, so retries and dead-lettering land on
 * it as events. Settlement is matched by topic, group, message id and attempt.
 */
export class ConsumerTracker {
  readonly #tracer: Tracer;
  readonly #options: ConsumerTracingOptions;
  /** Open spans waiting for settlement; a list per key because broadcast subscribers share one. */
  readonly #pending = new Map<string, ProcessState[]>();
  readonly #sweeper: NodeJS.Timeout;

  constructor(tracer: Tracer, options: ConsumerTracingOptions) {
    this.#tracer = tracer;
    this.#options = options;
    this.#sweeper = setInterval(
      guard(() => this.#sweep()),
      Math.min(5_000, Math.max(100, options.settleTimeoutMs / 2)),
    );
    this.#sweeper.unref();
  }

  /** Starts the span and returns the context the handler runs in. */
  start(ctx: ProcessContext, state: ProcessState): Context {
    let extracted = ROOT_CONTEXT;
    try {
      extracted = propagation.extract(ROOT_CONTEXT, ctx.message.headers);
    } catch (error) {
      // The user's propagator failed on these headers: the span still starts, as a new trace.
      report(error);
    }
    const remote = trace.getSpanContext(extracted);
    const asLink = this.#options.consumerParent === 'link';
    const parent = asLink ? ROOT_CONTEXT : extracted;
    const span = this.#tracer.startSpan(
      `process ${ctx.topic}`,
      {
        kind: SpanKind.CONSUMER,
        attributes: state.attributes,
        ...(asLink && remote ? { links: [{ context: remote }] } : {}),
      },
      parent,
    );
    state.span = span;
    const key = settleKey(ctx.system, ctx.topic, ctx.group, ctx.message.id, ctx.message.attempt);
    const list = this.#pending.get(key);
    if (list) list.push(state);
    else this.#pending.set(key, [state]);
    return trace.setSpan(parent, span);
  }

  failed(state: ProcessState, error: unknown): void {
    if (state.span && !state.ended) {
      state.errored = true;
      markError(state.span, error);
    }
  }

  settled(event: SettledEvent): void {
    const key = settleKey(event.system, event.topic, event.group, event.id, event.attempt);
    const list = this.#pending.get(key);
    const state = list?.shift();
    if (list?.length === 0) this.#pending.delete(key);
    if (state?.span && !state.ended) {
      state.ended = true;
      try {
        this.#annotate(state.span, event, state.errored);
      } finally {
        endSpan(state.span);
      }
      return;
    }
    if (!state && (event.outcome === 'dead-lettered' || event.outcome === 'dropped')) {
      // Rejected before any handler ran (undecodable or schema-invalid): still worth a visible error span.
      const attributes: Attributes = {
        [ATTR.system]: event.system,
        [ATTR.destination]: event.topic,
        [ATTR.operationType]: 'process',
        [ATTR.operationName]: 'process',
        [ATTR.messageId]: event.id,
        [ATTR.attempt]: event.attempt,
      };
      if (event.group !== undefined) attributes[ATTR.group] = event.group;
      const span = this.#tracer.startSpan(
        `process ${event.topic}`,
        { kind: SpanKind.CONSUMER, attributes },
        ROOT_CONTEXT,
      );
      try {
        this.#annotate(span, event, false);
      } finally {
        endSpan(span);
      }
    }
  }

  #annotate(span: Span, event: SettledEvent, errored: boolean): void {
    span.setAttribute(ATTR.outcome, event.outcome);
    const failure: Attributes = {};
    if (event.error !== undefined) failure[ATTR.errorType] = errorType(event.error);
    switch (event.outcome) {
      case 'retried':
        span.addEvent('busbar.retry', {
          ...failure,
          'busbar.retry.attempt': event.attempt,
          'busbar.retry.next_attempt': event.attempt + 1,
          'busbar.retry.delay_ms': event.delayMs ?? 0,
        });
        break;
      case 'dead-lettered':
        span.addEvent('busbar.dead_letter', {
          ...failure,
          'busbar.dead_letter.topic': event.deadLetterTopic ?? '',
          'busbar.dead_letter.attempts': event.attempt,
        });
        break;
      case 'dead-letter-failed':
        span.addEvent('busbar.dead_letter_failed', {
          ...failure,
          'busbar.dead_letter.topic': event.deadLetterTopic ?? '',
          'busbar.retry.delay_ms': event.delayMs ?? 0,
        });
        break;
      case 'dropped':
        span.addEvent('busbar.dropped', { ...failure, 'busbar.dropped.attempts': event.attempt });
        break;
      case 'released':
        span.addEvent('busbar.released');
        break;
      default:
        break;
    }
    // A handler timeout settles without a `busbar:process` error: mark the span from the settlement.
    const failedOutcome =
      event.outcome === 'retried' ||
      event.outcome === 'dead-lettered' ||
      event.outcome === 'dead-letter-failed' ||
      event.outcome === 'dropped';
    if (failedOutcome && !errored) {
      if (event.error !== undefined) markError(span, event.error);
      else span.setStatus({ code: SpanStatusCode.ERROR });
    }
  }

  #sweep(): void {
    const now = performance.now();
    for (const [key, list] of this.#pending) {
      for (let i = list.length - 1; i >= 0; i--) {
        const state = list[i] as ProcessState;
        const stale =
          (state.handlerEnd !== undefined && now - state.handlerEnd > this.#options.settleTimeoutMs) ||
          now - state.start > MAX_OPEN_MS;
        if (!stale) continue;
        list.splice(i, 1);
        if (state.span && !state.ended) {
          state.ended = true;
          endSpan(state.span);
        }
      }
      if (list.length === 0) this.#pending.delete(key);
    }
  }

  /** Ends every open span (on uninstall). */
  close(): void {
    clearInterval(this.#sweeper);
    for (const list of this.#pending.values()) {
      for (const state of list) {
        if (state.span && !state.ended) {
          state.ended = true;
          endSpan(state.span);
        }
      }
    }
    this.#pending.clear();
  }
}
