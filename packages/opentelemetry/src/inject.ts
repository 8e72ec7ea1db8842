import { checkHeaders, MAX_HEADERS_BYTES, RESERVED_HEADER_PREFIX } from '@busbar/core/transport';
import { type Context, diag, propagation } from '@opentelemetry/api';

/** Header names already warned about are remembered up to this many; past it the warnings stop. */
const MAX_WARNED = 1_000;
/** Dropped headers named in one warning. */
const MAX_LISTED = 10;

/** A header name or reason fit for one log line: bounded, control characters and lone surrogates escaped. */
function shown(text: string, max: number): string {
  const cut = text.length > max ? `${text.slice(0, max)}...` : text;
  return JSON.stringify(cut).replace(/[\u007f-\u009f]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
}

/** Bytes that count against core's header limit: every header but busbar's own (names are ASCII once checked). */
function userHeaderBytes(headers: Readonly<Record<string, string>>): number {
  let bytes = 0;
  for (const name in headers) {
    const value: unknown = headers[name];
    // Another channel subscriber may have written a non-string: the driver's problem, not this budget's.
    if (typeof value === 'string' && !name.startsWith(RESERVED_HEADER_PREFIX)) {
      bytes += name.length + Buffer.byteLength(value);
    }
  }
  return bytes;
}

/** Why core would refuse `name: value` as a user header, or undefined when it would take it. */
function refusal(name: string, value: unknown): string | undefined {
  try {
    // A computed key: `__proto__` becomes an own property, which core refuses by name.
    checkHeaders({ [name]: value });
    return undefined;
  } catch (error) {
    return error instanceof Error ? error.message : 'refused';
  }
}

/**
 * Injects the trace context into an outgoing message's headers through the global propagator. Core checked
 * the user's headers before this runs, and the broker refuses (or a driver throws on) what core would have
 * refused: the propagator writes into a carrier of its own, and only the headers core would take from a user
 * are copied over, within the same size limit, never replacing one the user set (but the propagator's own
 * fields). The rest are
 * dropped and named in one `diag.warn` (once per header name: a propagator that writes the same bad header
 * into every message is reported once, not per publish).
 */
export function headerInjector(): (active: Context, headers: Record<string, string>) => void {
  const warned = new Set<string>();
  return (active, headers) => {
    const carrier = Object.create(null) as Record<string, unknown>;
    propagation.inject(active, carrier);
    const kept: [string, string][] = [];
    const dropped: [string, string][] = [];
    let budget: number | undefined;
    // The propagator's own fields (traceparent, tracestate, baggage) replace a copy the user forwarded from a
    // received message: the send span is the next consumer's parent, as OpenTelemetry's inject always does.
    const own = new Set(propagation.fields().map((f) => f.toLowerCase()));
    for (const name of Object.keys(carrier)) {
      const value = carrier[name];
      const replaces = Object.hasOwn(headers, name);
      const why = replaces && !own.has(name.toLowerCase()) ? 'already set by the user or busbar' : refusal(name, value);
      if (why !== undefined) {
        dropped.push([name, why]);
        continue;
      }
      const text = value as string;
      budget ??= MAX_HEADERS_BYTES - userHeaderBytes(headers);
      const old = replaces ? headers[name] : undefined;
      if (typeof old === 'string') budget += name.length + Buffer.byteLength(old);
      const bytes = name.length + Buffer.byteLength(text);
      if (bytes > budget) {
        dropped.push([name, `over the ${MAX_HEADERS_BYTES}-byte limit of all headers`]);
        continue;
      }
      budget -= bytes;
      kept.push([name, text]);
    }
    for (const [name, value] of kept) headers[name] = value;
    if (dropped.length > 0) warnDropped(dropped, warned);
  };
}

function warnDropped(dropped: readonly (readonly [string, string])[], warned: Set<string>): void {
  const news = dropped.filter(([name]) => !warned.has(name));
  if (news.length === 0 || warned.size >= MAX_WARNED) return;
  for (const [name] of news) warned.add(name);
  const listed = news.slice(0, MAX_LISTED).map(([name, why]) => `${shown(name, 60)} (${shown(why, 160)})`);
  const more = news.length > MAX_LISTED ? ` and ${news.length - MAX_LISTED} more` : '';
  diag.warn(
    `@busbar/opentelemetry: the propagator wrote headers busbar does not accept from users; the message is published without them: ${listed.join(', ')}${more}`,
  );
}
