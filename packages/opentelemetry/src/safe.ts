import { diag, type Exception, type Span, SpanStatusCode } from '@opentelemetry/api';
import { ATTR } from './attributes.js';

/**
 * Instrumentation runs inside core's diagnostics channels, where node turns a
 * throwing subscriber into an uncaught exception (a process crash), and reads
 * values nobody vetted: whatever a handler threw, whatever the user's tracer,
 * meter or propagator does. Nothing here may throw.
 */

function attempt<T>(read: () => T, fallback: T): T {
  try {
    return read();
  } catch {
    return fallback;
  }
}

/** Reports a failure of the instrumentation itself to OpenTelemetry's diagnostic logger, then carries on. */
export function report(error: unknown): void {
  try {
    diag.error('@busbar/opentelemetry: instrumentation failed, the message itself is not affected', error);
  } catch {
    // A diagnostic logger that throws: nothing left to tell.
  }
}

/** `fn` that reports instead of throwing: for every diagnostics-channel subscriber and timer callback. */
export function guard<A extends unknown[]>(fn: (...args: A) => void): (...args: A) => void {
  return (...args) => {
    try {
      fn(...args);
    } catch (error) {
      report(error);
    }
  };
}

const stringOr = (value: unknown, fallback: string): string => (typeof value === 'string' ? value : fallback);

/**
 * `error.type`: the error class name, or `_OTHER`. A Proxy or a getter that
 * throws reads as `_OTHER` rather than escaping.
 */
export function errorType(error: unknown): string {
  return attempt(() => {
    if (typeof error !== 'object' || error === null) return '_OTHER';
    const name = (error as { name?: unknown }).name;
    return typeof name === 'string' && name.length > 0 ? name : '_OTHER';
  }, '_OTHER');
}

/** The status message: an Error's message, or a thrown value as text, never a throw of its own. */
function failureMessage(error: unknown, isError: boolean): string {
  if (isError) return attempt(() => stringOr((error as Error).message, ''), '');
  if (typeof error !== 'object' || error === null) return attempt(() => String(error), '');
  // A null-prototype object or one whose toString throws cannot become a string.
  return attempt(() => stringOr(String(error), ''), 'a non-Error value was thrown');
}

/**
 * What the span exception event gets: a plain copy of the Error's fields, read
 * once here, so the SDK never touches the thrown object (its getters may throw).
 */
function exceptionOf(error: Error): Exception {
  const code = attempt(() => (error as { code?: unknown }).code, undefined);
  const stack = attempt(() => error.stack, undefined);
  return {
    name: attempt(() => stringOr(error.name, 'Error'), 'Error'),
    message: attempt(() => stringOr(error.message, ''), ''),
    ...(typeof stack === 'string' ? { stack } : {}),
    ...(typeof code === 'string' || typeof code === 'number' ? { code } : {}),
  };
}

/** Marks a span failed: `error.type`, an `exception` event for Errors, status ERROR with the message. */
export function markError(span: Span, error: unknown): void {
  const isError = attempt(() => error instanceof Error, false);
  span.setAttribute(ATTR.errorType, errorType(error));
  if (isError) span.recordException(exceptionOf(error as Error));
  span.setStatus({ code: SpanStatusCode.ERROR, message: failureMessage(error, isError) });
}

/** Ends a span whatever its tracer does. */
export function endSpan(span: Span): void {
  try {
    span.end();
  } catch (error) {
    report(error);
  }
}
