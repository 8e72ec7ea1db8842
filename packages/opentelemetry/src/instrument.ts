import type { AsyncLocalStorage } from 'node:async_hooks';
import { channels, type ProcessContext, type PublishContext, type SettledEvent } from '@busbar/core';
import {
  type Attributes,
  type Context,
  context,
  type MeterProvider,
  metrics,
  type Span,
  SpanKind,
  type TracerProvider,
  trace,
} from '@opentelemetry/api';
import { ATTR } from './attributes.js';
import { ConsumerTracker, type ProcessState, processAttributes } from './consumer.js';
import { headerInjector } from './inject.js';
import { MessagingMetrics } from './metrics.js';
import { checkOptions } from './options.js';
import { endSpan, errorType, guard, markError, report } from './safe.js';

export interface InstrumentationOptions {
  /** Where spans go. Default: the global tracer provider (`trace.setGlobalTracerProvider`, or your SDK's `register()`). */
  tracerProvider?: TracerProvider;
  /** Where metrics go. Default: the global meter provider. */
  meterProvider?: MeterProvider;
  /** Record spans. Default true. */
  tracing?: boolean;
  /** Record metrics. Default true. */
  metrics?: boolean;
  /**
   * How a consumer span relates to the producer span found in the message
   * headers: `parent` (default) puts both in one trace; `link` starts a new
   * trace linked to the producer's, for long-lived or fan-out flows.
   */
  consumerParent?: 'parent' | 'link';
  /** Header whose value becomes `messaging.message.conversation_id`. Default `correlation-id`; `false` to skip. */
  conversationIdHeader?: string | false;
  /**
   * How long a consumer span waits, after its handler returned, for core to
   * report how the delivery was settled before it is ended anyway (when an
   * ack failed, for instance). Default 30 000 ms.
   */
  settleTimeoutMs?: number;
}

const NAME = '@busbar/opentelemetry';
const VERSION = '0.1.0';

type Traced<T> = T & { error?: unknown };

interface PublishState {
  readonly start: number;
  span: Span | undefined;
}

/**
 * Lets a tracing channel run core's publish and handler calls inside an
 * OpenTelemetry context. Node only calls `run` on a bound store, so the
 * global context manager does the real work and this package needs no SDK.
 */
function contextStore(): AsyncLocalStorage<Context> {
  const store = {
    run<R>(ctx: Context, fn: (...args: unknown[]) => R, ...args: unknown[]): R {
      return context.with(ctx, fn, undefined, ...args);
    },
  };
  return store as unknown as AsyncLocalStorage<Context>;
}

function publishAttributes(ctx: PublishContext): Attributes {
  const attributes: Attributes = {
    [ATTR.system]: ctx.system,
    [ATTR.destination]: ctx.topic,
    [ATTR.operationType]: 'send',
    [ATTR.operationName]: 'send',
  };
  if (ctx.messages.length === 1) {
    const message = ctx.messages[0] as PublishContext['messages'][number];
    attributes[ATTR.messageId] = message.id;
    if (message.key !== undefined && ctx.system === 'kafka') attributes[ATTR.kafkaKey] = message.key;
  } else {
    attributes[ATTR.batchCount] = ctx.messages.length;
  }
  return attributes;
}

function metricAttributes(attributes: Attributes, error: unknown): Attributes {
  const out: Attributes = {
    [ATTR.system]: attributes[ATTR.system],
    [ATTR.destination]: attributes[ATTR.destination],
    [ATTR.operationName]: attributes[ATTR.operationName],
  };
  if (attributes[ATTR.group] !== undefined) out[ATTR.group] = attributes[ATTR.group];
  if (error !== undefined) out[ATTR.errorType] = errorType(error);
  return out;
}

/**
 * Traces and measures every busbar bus in this process, through core's
 * diagnostics channels: a `send <topic>` producer span per publish (W3C trace
 * context injected into each message's headers), a `process <topic>` consumer
 * span per handler run (parented on the extracted context), retries and
 * dead-lettering as span events, and messaging metrics. Returns a function
 * that removes the instrumentation.
 */
export function instrumentBusbar(options: InstrumentationOptions = {}): () => void {
  checkOptions(options);
  const tracing = options.tracing ?? true;
  const tracer = tracing ? (options.tracerProvider ?? trace.getTracerProvider()).getTracer(NAME, VERSION) : undefined;
  const meter =
    (options.metrics ?? true)
      ? (options.meterProvider ?? metrics.getMeterProvider()).getMeter(NAME, VERSION)
      : undefined;
  const instruments = meter ? new MessagingMetrics(meter) : undefined;
  const conversationIdHeader =
    options.conversationIdHeader === false ? undefined : (options.conversationIdHeader ?? 'correlation-id');
  const consumers = tracer
    ? new ConsumerTracker(tracer, {
        consumerParent: options.consumerParent ?? 'parent',
        conversationIdHeader,
        settleTimeoutMs: options.settleTimeoutMs ?? 30_000,
      })
    : undefined;

  const publishes = new WeakMap<object, PublishState>();
  const processes = new WeakMap<object, ProcessState>();
  const store = contextStore();
  const inject = headerInjector();

  const publishState = (ctx: PublishContext): PublishState => {
    let state = publishes.get(ctx);
    if (!state) {
      state = { start: performance.now(), span: undefined };
      publishes.set(ctx, state);
    }
    return state;
  };
  const processState = (ctx: ProcessContext): ProcessState => {
    let state = processes.get(ctx);
    if (!state) {
      state = {
        start: performance.now(),
        attributes: processAttributes(ctx, conversationIdHeader),
        span: undefined,
        handlerEnd: undefined,
        errored: false,
        ended: false,
      };
      processes.set(ctx, state);
    }
    return state;
  };

  const finishPublish = (ctx: Traced<PublishContext>): void => {
    const state = publishes.get(ctx);
    if (!state) return;
    publishes.delete(ctx);
    const error = ctx.error;
    const span = state.span;
    if (span) {
      try {
        if (error !== undefined) markError(span, error);
      } catch (failure) {
        // The metrics below still count this publish, and the span still ends.
        report(failure);
      } finally {
        endSpan(span);
      }
    }
    instruments?.sent(
      metricAttributes(publishAttributes(ctx), error),
      ctx.messages.length,
      (performance.now() - state.start) / 1000,
    );
  };

  const finishProcess = (ctx: Traced<ProcessContext>): void => {
    const state = processes.get(ctx);
    if (!state || state.handlerEnd !== undefined) return;
    state.handlerEnd = performance.now();
    instruments?.processed(metricAttributes(state.attributes, ctx.error), (state.handlerEnd - state.start) / 1000);
  };

  // Every subscriber is guarded: node reports a throwing one as an uncaught exception, which ends the process.
  const publishHandlers = {
    start: guard((ctx: PublishContext) => void publishState(ctx)),
    end: guard((ctx: Traced<PublishContext>) => {
      // Only a synchronous throw has set `error` by now; async outcomes arrive in asyncEnd.
      if (ctx.error !== undefined) finishPublish(ctx);
    }),
    asyncStart: () => undefined,
    asyncEnd: guard(finishPublish),
    error: () => undefined,
  };
  const processHandlers = {
    start: guard((ctx: ProcessContext) => {
      const state = processState(ctx);
      instruments?.consumed(metricAttributes(state.attributes, undefined));
    }),
    end: guard((ctx: Traced<ProcessContext>) => {
      if (ctx.error !== undefined) finishProcess(ctx);
    }),
    asyncStart: () => undefined,
    asyncEnd: guard(finishProcess),
    error: guard((ctx: Traced<ProcessContext>) => {
      const state = processes.get(ctx);
      if (state) consumers?.failed(state, ctx.error);
    }),
  };
  const onSettled = (message: unknown) => {
    const event = message as SettledEvent;
    // Two guards: a tracer that fails must not cost the settled metric, nor a meter the span.
    guard(() => consumers?.settled(event))();
    guard(() => instruments?.settled(event))();
  };

  if (tracer && consumers) {
    // A store transform that throws is an uncaught exception too; on failure the call runs in the caller's context.
    channels.publish.start.bindStore(store, (ctx) => {
      const parent = context.active();
      try {
        const state = publishState(ctx);
        const span = tracer.startSpan(
          `send ${ctx.topic}`,
          { kind: SpanKind.PRODUCER, attributes: publishAttributes(ctx) },
          parent,
        );
        state.span = span;
        const active = trace.setSpan(parent, span);
        try {
          for (const message of ctx.messages) inject(active, message.headers);
        } catch (error) {
          // The span is kept (and ended with the publish); only the header context is missing.
          report(error);
        }
        return active;
      } catch (error) {
        report(error);
        return parent;
      }
    });
    channels.process.start.bindStore(store, (ctx) => {
      try {
        return consumers.start(ctx, processState(ctx));
      } catch (error) {
        report(error);
        return context.active();
      }
    });
  }
  channels.publish.subscribe(publishHandlers);
  channels.process.subscribe(processHandlers);
  channels.settled.subscribe(onSettled);

  let installed = true;
  return () => {
    if (!installed) return;
    installed = false;
    channels.publish.unsubscribe(publishHandlers);
    channels.process.unsubscribe(processHandlers);
    channels.settled.unsubscribe(onSettled);
    if (tracer) {
      channels.publish.start.unbindStore(store);
      channels.process.start.unbindStore(store);
    }
    consumers?.close();
  };
}
